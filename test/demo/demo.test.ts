/**
 * `npm run demo` as a user runs it, through a pipe: scripts/demo.mjs with a small fleet. A whole
 * rollout prints its figures and writes the HTML timeline into ./demo-output/; Ctrl-C in the
 * middle of one (SIGINT to the demo's process group, as a terminal sends it) stops every process
 * the demo started and removes every temp dir it made. The sluicectl command the demo prints for
 * a second terminal is run as printed; with `--stay` the fleet stays up after the rollout, the
 * printed `export` line and commands work against it, and Ctrl-C then ends the demo with exit 0.
 * `--os fcos` rolls out Fedora CoreOS nodes (rpm-ostreed, finalization locked) the same way.
 *
 * Each run gets its own TMPDIR, so its temp dirs are easy to find, and every process the demo
 * starts (etcd, dbus-daemons, sluiced) names a file in it on its command line: a process whose
 * command line still names it after the demo has exited was left behind. The checkout must be
 * installed (`npm ci`), built and bundled (`npm test` does both): the demo runs with `--no-setup`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DEMO = join(ROOT, 'scripts/demo.mjs');
const OUTPUT = join(ROOT, 'demo-output');
/** Timelines the tests made in ./demo-output/, removed after each test. */
const pages: string[] = [];

/** A running or finished demo. */
interface Demo {
  child: ChildProcess;
  tmp: string;
  output(): string;
  exited: Promise<number | string>;
}

const started: Demo[] = [];

beforeAll(() => {
  for (const bin of ['sluiced', 'sluicectl']) {
    if (!existsSync(join(ROOT, 'node_modules/.bin', bin))) {
      throw new Error(`node_modules/.bin/${bin} is missing: run "npm ci" in ${ROOT}`);
    }
  }
  // The demo's nodes run the agent bundle, as real nodes do.
  if (!existsSync(join(ROOT, 'dist-bundle/sluiced.mjs'))) {
    throw new Error('dist-bundle/sluiced.mjs is missing: run "node scripts/bundle.mjs" first');
  }
});

afterEach(async () => {
  // Whatever a failed test left running goes, by PID, and so do the temp dirs.
  for (const demo of started.splice(0)) {
    if (demo.child.exitCode === null && demo.child.signalCode === null) {
      signalGroup(demo, 'SIGKILL');
    }
    for (const p of await processesNaming(demo.tmp)) kill(p.pid);
    await rm(demo.tmp, { recursive: true, force: true });
  }
  for (const page of pages.splice(0)) await rm(page, { force: true });
});

/** The timeline the demo printed as a file:// URL: a file in ./demo-output/. */
function printedPage(out: string): string {
  const url = out.match(/^HTML timeline: +(\S+)$/m)?.[1];
  expect(url, out).toMatch(/^file:\/\/\//);
  const path = fileURLToPath(url!);
  pages.push(path);
  expect(path.startsWith(`${OUTPUT}/`), path).toBe(true);
  return path;
}

/** Starts `node scripts/demo.mjs --no-setup ...args` in its own process group and TMPDIR. */
async function startDemo(args: string[]): Promise<Demo> {
  const tmp = await mkdtemp(join(tmpdir(), 'sluice-demo-test-'));
  const child = spawn(process.execPath, [DEMO, '--no-setup', ...args], {
    cwd: ROOT,
    // No CI or terminal settings of the test runner's may change how the demo draws.
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: tmp, TERM: 'dumb' },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const demo = { child, tmp, output: () => out, exited };
  started.push(demo);
  return demo;
}

/** Sends `signal` to every process in the demo's process group, as a terminal's Ctrl-C does. */
function signalGroup(demo: Demo, signal: NodeJS.Signals): void {
  try {
    process.kill(-demo.child.pid!, signal);
  } catch {
    // Gone already.
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

/** A live process: pid, process group, name and command line. */
interface Proc {
  pid: number;
  pgrp: number;
  comm: string;
  cmdline: string;
}

/** Every live (not zombie) process on the machine. */
async function processes(): Promise<Proc[]> {
  const found: Proc[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // The name may hold spaces and parentheses: the fields after it start after the last ')'.
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const [state, , pgrp] = stat.slice(close + 2).split(' ');
      if (state === 'Z') continue;
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      found.push({ pid: Number(entry), pgrp: Number(pgrp), comm, cmdline });
    } catch {
      // It exited while we looked.
    }
  }
  return found;
}

/** Live processes whose command line names `path`. */
async function processesNaming(path: string): Promise<Proc[]> {
  return (await processes()).filter((p) => p.cmdline.includes(path));
}

/** Live processes the demo left: in its process group, or naming its TMPDIR. */
async function leftovers(demo: Demo): Promise<string[]> {
  return (await processes())
    .filter((p) => p.pgrp === demo.child.pid || p.cmdline.includes(demo.tmp))
    .map((p) => `${p.pid} ${p.comm}: ${p.cmdline.slice(0, 200)}`);
}

/** What the demo left in its TMPDIR, but for tsx's compile cache (tsx-<uid>), which is tsx's. */
async function leftFiles(demo: Demo): Promise<string[]> {
  return (await readdir(demo.tmp)).filter((name) => !/^tsx-\d+$/.test(name)).sort();
}

/** Resolves with the first match of `pattern` in the demo's output; fails if it exits first. */
async function waitFor(demo: Demo, pattern: RegExp, timeoutMs = 40_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = demo.output().match(pattern);
    if (match) return match;
    if (demo.child.exitCode !== null || demo.child.signalCode !== null || Date.now() > deadline) {
      throw new Error(`no ${pattern} in the demo's output:\n${demo.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs a command line to its end, without a shell. */
function runLine(
  argv: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<{ code: number | string; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? -1, out });
    });
  });
}

describe('npm run demo', () => {
  it('rolls out a small fleet, prints the figures and writes the HTML timeline', async () => {
    const demo = await startDemo([
      '--nodes',
      '3',
      '--max',
      '1',
      '--reboot-seconds',
      '1',
      '--plain',
      '--timeout',
      '40',
    ]);
    const code = await demo.exited;
    const out = demo.output();
    expect(code, out).toBe(0);
    // A pipe gets plain lines: no colours, no cursor movement.
    expect(out).not.toContain('\x1b');
    expect(out).toMatch(
      /^rollout time: +\d+\.\d s \(ideal ceil\(3\/1\) × 1 s = 3\.0 s; \d+ % of ideal\)$/m,
    );
    expect(out).toMatch(/^peak nodes down at once: 1 \(max 1\)$/m);
    expect(out).toMatch(/^etcd writes per reboot: +\d+\.\d \(revision delta \d+ over 3 reboots;/m);
    expect(out).toMatch(/^invariant check: +invariants hold: 3 reboots, at most 1 down at once/m);

    const page = await readFile(printedPage(out), 'utf8');
    expect(page).toMatch(/^<!doctype html>/);
    expect(page).toContain('<svg');
    for (const node of ['n01', 'n02', 'n03']) {
      expect(page).toMatch(new RegExp(`<g class="lane" data-node="${node}">`));
    }
    // Every node went down once, and the line of how many nodes are down at once is drawn.
    expect(page.match(/class="seg" data-state="down"/g)).toHaveLength(3);
    expect(page).toContain('class="down-line"');

    expect(await leftovers(demo)).toEqual([]);
    // Nothing stays in TMPDIR: etcd's, the buses' and the fleet's dirs are gone.
    expect(await leftFiles(demo)).toEqual([]);
  }, 60_000);

  it('--os fcos rolls out Fedora CoreOS nodes: rpm-ostree, finalization locked', async () => {
    const demo = await startDemo([
      '--os',
      'fcos',
      '--nodes',
      '2',
      '--max',
      '1',
      '--reboot-seconds',
      '1',
      '--plain',
      '--timeout',
      '40',
    ]);
    const code = await demo.exited;
    const out = demo.output();
    expect(code, out).toBe(0);
    expect(out).toContain(
      'started 2 nodes, each with its own dbus-daemon, rpm-ostreed, logind and sluiced',
    );
    expect(out).toMatch(/^peak nodes down at once: 1 \(max 1\)$/m);
    expect(out).toMatch(/^invariant check: +invariants hold: 2 reboots, at most 1 down at once/m);
    const page = await readFile(printedPage(out), 'utf8');
    expect(page.match(/class="seg" data-state="down"/g)).toHaveLength(2);
    expect(await leftovers(demo)).toEqual([]);
    expect(await leftFiles(demo)).toEqual([]);
  }, 60_000);

  it('--domains 3 --domain-max 1 reboots at most one node of a zone at once', async () => {
    const demo = await startDemo(
      ['--nodes', '6', '--max', '2', '--domains', '3', '--domain-max', '1'].concat([
        '--reboot-seconds',
        '1',
        '--plain',
        '--timeout',
        '60',
      ]),
    );
    const code = await demo.exited;
    const out = demo.output();
    expect(code, out).toBe(0);
    expect(out).toContain(
      'failure domains: 3 (zone-1 to zone-3, round robin), at most 1 of one domain at once',
    );
    expect(out).toMatch(/^peak down in one domain: +1 \(domain-max 1\)$/m);
    expect(out).toMatch(/^invariant check: +invariants hold: 6 reboots/m);
    // The timeline labels each lane with its node's domain.
    const page = await readFile(printedPage(out), 'utf8');
    expect(page).toContain('<title>n01 · zone-1</title>');
    expect(await leftovers(demo)).toEqual([]);
  }, 90_000);

  it('--canary 2 reboots two nodes first, and the rest only once they are back and soaked', async () => {
    const demo = await startDemo(
      ['--nodes', '5', '--max', '3', '--canary', '2', '--canary-soak', '2s'].concat([
        '--reboot-seconds',
        '1',
        '--plain',
        '--timeout',
        '60',
      ]),
    );
    const code = await demo.exited;
    const out = demo.output();
    expect(code, out).toBe(0);
    // The invariant check reads the simulated logind's reboot log: rule 10 held.
    expect(out).toMatch(/^invariant check: +invariants hold: 5 reboots/m);
    const line =
      /^canary: +(n\d+), (n\d+) rebooted first; the next reboot began ([\d.]+) s after/m.exec(out);
    expect(line, out).not.toBeNull();
    expect(Number(line![3])).toBeGreaterThanOrEqual(2);
    expect(await leftovers(demo)).toEqual([]);
  }, 90_000);

  it('--stay keeps the fleet up after the rollout until Ctrl-C, for the printed commands', async () => {
    const demo = await startDemo([
      '--nodes',
      '2',
      '--max',
      '1',
      '--reboot-seconds',
      '1',
      '--plain',
      '--stay',
      '--timeout',
      '40',
    ]);
    await waitFor(demo, /^The fleet and etcd keep running \(--stay\)/m);
    const out = demo.output();
    expect(out).toMatch(/^peak nodes down at once: 1 \(max 1\)$/m);
    const where = out.match(/^In another terminal, in (\S+), /m)![1]!;
    // The export line sets what the flags would: sluicectl with no flags then reaches the fleet.
    const exported = out.match(/^ {2}export (.+)$/m)?.[1];
    expect(exported, out).toMatch(/^SLUICE_ENDPOINTS=http:\/\/127\.0\.0\.1:\d+ /);
    const env = Object.fromEntries(
      exported!.split(' ').map((kv) => kv.split('=') as [string, string]),
    );
    const ran = await runLine(
      ['npx', '--offline', '--yes=false', 'sluicectl', 'set-max', '2'],
      where,
      env,
    );
    expect(ran.code, ran.out).toBe(0);
    expect(ran.out).toContain('max of group default: 1 -> 2');
    const status = await runLine(
      ['npx', '--offline', '--yes=false', 'sluicectl', 'status'],
      where,
      env,
    );
    expect(status.code, status.out).toBe(0);
    expect(status.out).toMatch(/^Max: +2$/m);
    // The etcd and the agents are still there.
    expect((await processesNaming(demo.tmp)).some((p) => p.comm === 'etcd')).toBe(true);

    signalGroup(demo, 'SIGINT');
    const code = await demo.exited;
    // The rollout had finished and every invariant held: Ctrl-C only ended the stay.
    expect(code, demo.output()).toBe(0);
    // The timeline is written again on the way out, with what happened while staying.
    expect(demo.output()).toMatch(/^HTML timeline, up to now: +file:\/\/\//m);
    const page = await readFile(printedPage(demo.output()), 'utf8');
    expect(page).toMatch(/<g class="marker" data-kind="max" data-marker="\d+">/);
    expect(page).toContain('max 1 → 2');
    expect(await leftovers(demo)).toEqual([]);
    expect(await leftFiles(demo)).toEqual([]);
  }, 60_000);

  it('Ctrl-C mid-rollout stops every process it started and removes its temp dirs', async () => {
    const demo = await startDemo([
      '--nodes',
      '3',
      '--max',
      '1',
      '--reboot-seconds',
      '3',
      '--plain',
      '--timeout',
      '40',
    ]);
    // The command it prints for a second terminal works there, against the live fleet.
    const where = (await waitFor(demo, /^In another terminal, in (\S+), /m))[1]!;
    const status = (await waitFor(demo, /^ {2}npx (sluicectl .* status)$/m))[1]!;
    // --yes=false: never from the registry, whatever npx's defaults under CI.
    const ran = await runLine(['npx', '--offline', '--yes=false', ...status.split(' ')], where);
    expect(ran.code, ran.out).toBe(0);
    expect(ran.out).toMatch(/^Group: +default$/m);

    // Processes it started are seen by the check below while they run.
    const running = await processesNaming(demo.tmp);
    expect(running.filter((p) => p.comm === 'etcd')).toHaveLength(1);
    expect(running.filter((p) => p.comm === 'dbus-daemon')).toHaveLength(3);

    // Mid-rollout: a node went down for its reboot, and the rollout is not done.
    await waitFor(demo, /^\+[\d.]+s n\d+ .* -> down /m);
    expect(demo.output()).not.toContain('[rollout-done]');
    expect(
      (await processesNaming(demo.tmp)).some((p) => p.cmdline.includes('dist-bundle/sluiced.mjs')),
    ).toBe(true);
    signalGroup(demo, 'SIGINT');
    const code = await demo.exited;
    const out = demo.output();
    expect(code, out).toBe(130);
    expect(out).toContain('SIGINT: stopping every process of the simulation');
    expect(out).not.toContain('rollout time:');
    expect(await leftovers(demo)).toEqual([]);
    expect(await leftFiles(demo)).toEqual([]);
  }, 60_000);

  it('a simulator killed outright takes etcd, the buses and the agents with it', async () => {
    const demo = await startDemo([
      '--nodes',
      '2',
      '--max',
      '1',
      '--reboot-seconds',
      '3',
      '--plain',
      '--timeout',
      '40',
    ]);
    await waitFor(demo, /^staging update/m);
    const sim = (await processes()).find(
      (p) => p.pgrp === demo.child.pid && p.cmdline.includes('packages/sim/src/demo.ts'),
    );
    expect(sim, demo.output()).toBeDefined();
    const running = await processesNaming(demo.tmp);
    expect(running.map((p) => p.comm)).toEqual(expect.arrayContaining(['etcd', 'dbus-daemon']));
    // SIGKILL runs no cleanup: only the kernel's pdeathsig (setpriv) can end what it started.
    kill(sim!.pid);
    await demo.exited;
    let left = await processesNaming(demo.tmp);
    for (let i = 0; i < 40 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      left = await processesNaming(demo.tmp);
    }
    expect(left.map((p) => `${p.pid} ${p.comm}: ${p.cmdline.slice(0, 200)}`)).toEqual([]);
  }, 60_000);
});
