/**
 * Shared set-up for the deployment tests: building the single-file bundle into a temp dir,
 * running shell tools, temp dirs that are removed even when a test fails, and
 * `systemd-analyze verify` on copies of the units whose /opt/sluice paths point at real files.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, with a trailing slash. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The deploy/ directory. */
export const DEPLOY = join(ROOT, 'deploy');
/** The systemd units, by file name. */
export const SYSTEMD_UNITS = [
  'sluiced.service',
  'sluice-reboot.service',
  'sluice-reboot.timer',
  'sluice-release.service',
  'sluice-fleetlock.service',
] as const;

/** How a finished command ended. */
export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion without a shell; never throws for a non-zero exit. */
export function run(
  file: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        timeout: opts.timeoutMs ?? 30_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        // A program that could not start (ENOENT) or was killed says so in stderr.
        const why = error && code === -1 && !String(stderr) ? `${error.message}\n` : '';
        resolve({ code, stdout: String(stdout), stderr: String(stderr) + why });
      },
    );
  });
}

/** Temp dirs made by a test file; `removeAll()` in afterAll/afterEach deletes them. */
export class TempDirs {
  readonly #dirs: string[] = [];

  async make(label: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), `sluice-deploy-${label}-`));
    this.#dirs.push(dir);
    return dir;
  }

  async removeAll(): Promise<void> {
    const dirs = this.#dirs.splice(0);
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  }
}

/**
 * A node's own files for running sluiced in a test: its machine id, boot id `boot-1`, an empty
 * config file and no locksmith update.conf. `args` points sluiced at them, with metrics and the
 * sentinel file off.
 */
export async function agentNode(
  dirs: TempDirs,
  node: string,
): Promise<{ dir: string; args: string[] }> {
  const dir = await dirs.make('agent');
  await writeFile(join(dir, 'machine-id'), `${node}\n`);
  await writeFile(join(dir, 'boot_id'), 'boot-1\n');
  await writeFile(join(dir, 'sluiced.yaml'), '');
  await mkdir(join(dir, 'empty'));
  const args = [
    ['--config', join(dir, 'sluiced.yaml')],
    ['--update-conf', join(dir, 'empty/update.conf')],
    ['--machine-id-file', join(dir, 'machine-id')],
    ['--boot-id-file', join(dir, 'boot_id')],
    ['--token-file', join(dir, 'instance')],
    ['--metrics-listen', 'off'],
    ['--sentinel', 'off'],
  ].flat();
  return { dir, args };
}

/** Where a built bundle is. */
export interface Bundle {
  dir: string;
  sluiced: string;
  sluicectl: string;
  /** locksmithctl's commands on sluice's keys. */
  locksmithctl: string;
  /** The FleetLock server. */
  'sluice-fleetlock': string;
}

/** Builds the bundle with scripts/bundle.mjs into `dir` (not dist-bundle/, which may be in use). */
export async function buildBundle(dir: string): Promise<Bundle> {
  const built = await run(process.execPath, [join(ROOT, 'scripts/bundle.mjs'), '--outdir', dir], {
    cwd: ROOT,
    timeoutMs: 120_000,
  });
  if (built.code !== 0) {
    throw new Error(`scripts/bundle.mjs failed (${built.code}):\n${built.stderr}${built.stdout}`);
  }
  return {
    dir,
    sluiced: join(dir, 'sluiced.mjs'),
    sluicectl: join(dir, 'sluicectl.mjs'),
    locksmithctl: join(dir, 'locksmithctl.mjs'),
    'sluice-fleetlock': join(dir, 'sluice-fleetlock.mjs'),
  };
}

/** Copies one bundle file alone into a new empty dir (no node_modules anywhere above it). */
export async function isolate(file: string, dirs: TempDirs): Promise<string> {
  const dir = await dirs.make('alone');
  const target = join(dir, basename(file));
  await copyFile(file, target);
  await chmod(target, 0o755);
  return target;
}

/**
 * True when the CI variable is set (to anything but "false" or "0"). There a test that needs a
 * missing tool fails instead of skipping, so a run can never pass by skipping them.
 */
export const IN_CI = !['', 'false', '0'].includes((process.env.CI ?? '').trim().toLowerCase());

/** The first of `paths` that exists, or undefined. */
export function findTool(paths: readonly string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}

/**
 * For `it.skipIf` / `describe.skipIf`: skip when `tool` is missing, but only outside CI. Under CI
 * the test runs and {@link needTool} fails it, naming the package to install.
 */
export function skipWithout(tool: string | undefined): boolean {
  return tool === undefined && !IN_CI;
}

/** Returns `tool`, or throws naming the Debian package when this machine has none. */
export function needTool(tool: string | undefined, name: string, debianPackage: string): string {
  if (tool !== undefined) return tool;
  throw new Error(
    `${name} is not installed (Debian: apt-get install ${debianPackage}; scripts/bootstrap.mjs ` +
      'installs it as root). Outside CI the tests that need it skip; with CI set they fail.',
  );
}

/** The systemd-analyze binary, or undefined when this machine has none. */
export const SYSTEMD_ANALYZE = findTool(['/usr/bin/systemd-analyze', '/bin/systemd-analyze']);
/** `skipIf` condition of the tests that run systemd-analyze. */
export const NO_SYSTEMD_ANALYZE = skipWithout(SYSTEMD_ANALYZE);

/**
 * Runs `systemd-analyze verify` on the given unit files, all copied into one temp dir (so a timer
 * finds its service). verify insists that ExecStart= names an executable file, and
 * /opt/sluice/bin does not exist on a test machine. So in the copies, `prefix` (default
 * /opt/sluice/) is replaced by `target/`: a directory whose bin/ holds the real programs (an
 * install root), or by default a temp dir with executable stubs of the programs in bin/.
 * Nothing else in the units changes.
 */
export async function verifyUnits(
  units: readonly string[],
  dirs: TempDirs,
  opts: { prefix?: string; target?: string } = {},
): Promise<Ran & { copies: string[] }> {
  const analyze = needTool(SYSTEMD_ANALYZE, 'systemd-analyze', 'systemd');
  const dir = await dirs.make('verify');
  const prefix = opts.prefix ?? '/opt/sluice/';
  let target = opts.target;
  if (target === undefined) {
    target = join(dir, 'prefix');
    await mkdir(join(target, 'bin'), { recursive: true });
    for (const name of ['sluiced', 'sluicectl', 'sluice-fleetlock']) {
      await writeFile(join(target, 'bin', name), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    }
  }
  const copies: string[] = [];
  for (const unit of units) {
    const text = await readFile(unit, 'utf8');
    const copy = join(dir, basename(unit));
    await writeFile(copy, text.replaceAll(prefix, `${target.replace(/\/$/, '')}/`));
    copies.push(copy);
  }
  const result = await run(analyze, ['verify', ...copies], { cwd: dir });
  return { ...result, copies };
}

/** The lines of a unit file's section, without comments and blank lines. */
export function sectionLines(unitText: string, section: string): string[] {
  const lines: string[] = [];
  let current = '';
  for (const raw of unitText.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[') && line.endsWith(']')) {
      current = line.slice(1, -1);
      continue;
    }
    if (current === section && line !== '' && !line.startsWith('#')) lines.push(line);
  }
  return lines;
}
