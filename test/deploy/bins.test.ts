/**
 * `npx sluiced` and `npx sluicectl` from the repository root, after `npm ci` and the build (what
 * the README and the demo tell users to run). npm links a package's bin into node_modules/.bin
 * at install time, and only if the file exists then, which is before any build. So each bin is a
 * committed shim, packages/<pkg>/bin/<program>.mjs, that loads the built dist/main.js; pointed at
 * dist/main.js itself, the link would be missing and npx would look for the name in the registry.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, run } from './helpers.js';

const PROGRAMS = [
  ['sluiced', 'agent'],
  ['sluicectl', 'cli'],
  ['locksmithctl', 'cli'],
  ['sluice-fleetlock', 'fleetlock'],
] as const;

/** Every bin of each package. */
const BINS: Record<string, Record<string, string>> = {
  agent: { sluiced: './bin/sluiced.mjs' },
  cli: { locksmithctl: './bin/locksmithctl.mjs', sluicectl: './bin/sluicectl.mjs' },
  fleetlock: { 'sluice-fleetlock': './bin/sluice-fleetlock.mjs' },
};

interface PackageJson {
  version: string;
  bin: Record<string, string>;
  files: string[];
}

const packageJson = async (dir: string): Promise<PackageJson> =>
  JSON.parse(await readFile(join(ROOT, 'packages', dir, 'package.json'), 'utf8'));

describe.each(PROGRAMS)('%s', (program, dir) => {
  const shim = `bin/${program}.mjs`;

  it(`package.json and package-lock.json name ${shim} as the bin, and publish bin/`, async () => {
    const pkg = await packageJson(dir);
    expect(pkg.bin[program]).toBe(`./${shim}`);
    expect(pkg.bin).toEqual(BINS[dir]);
    expect(pkg.files).toContain('bin');
    // npm ci links the bins the lockfile lists.
    const lock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8'));
    expect(lock.packages[`packages/${dir}`].bin[program]).toBe(shim);
  });

  it('the shim is a source file (not build output), executable, with a shebang', async () => {
    const file = join(ROOT, 'packages', dir, shim);
    expect((await stat(file)).mode & 0o111).toBe(0o111);
    expect((await readFile(file, 'utf8')).split('\n', 1)[0]).toBe('#!/usr/bin/env node');
    // git keeps it, so a fresh clone has it when npm ci runs; dist/ is ignored, built later.
    const ignored = async (path: string) =>
      (await run('git', ['-C', ROOT, 'check-ignore', '-q', join('packages', dir, path)])).code;
    expect(await ignored(shim)).toBe(1);
    expect(
      await ignored(program === 'locksmithctl' ? 'dist/locksmithctl-main.js' : 'dist/main.js'),
    ).toBe(0);
  });

  it(`npm exec --offline --no -- ${program} --version answers from the repository root`, async () => {
    const { version } = await packageJson(dir);
    const result = await run('npm', ['exec', '--offline', '--no', '--', program, '--version'], {
      cwd: ROOT,
      timeoutMs: 30_000,
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(version);
  });
});
