/**
 * Bad input to the agent's configuration fails closed with a short, clear error: blank windows
 * are refused, no error or warning ever contains a password (whatever else is wrong and wherever
 * else it was pasted), keys that are not plain names are not echoed, and files beyond the size
 * and nesting caps are refused before they are parsed.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSluiceError } from '@sluice/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentFlags,
  type LoadOptions,
  loadAgentConfig,
  MAX_CONFIG_DEPTH,
  MAX_CONFIG_FILE_BYTES,
} from './config/index.js';

let dir: string;
let machineIdFile: string;
let counter = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-config-input-'));
  machineIdFile = join(dir, 'machine-id');
  await writeFile(machineIdFile, '0123456789abcdef0123456789abcdef\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Setup {
  yaml?: string;
  updateConf?: string;
  env?: NodeJS.ProcessEnv;
  flags?: AgentFlags;
}

/** Loads the configuration; returns the error (or null) and the warnings. */
async function attempt(setup: Setup): Promise<{ error: Error | null; warnings: string[] }> {
  const n = counter++;
  const options: LoadOptions = {
    env: setup.env ?? {},
    flags: setup.flags ?? {},
    updateConfFiles: [],
    machineIdFile,
    hostname: 'test-host',
  };
  if (setup.yaml !== undefined) {
    options.configFile = join(dir, `sluiced-${n}.yaml`);
    await writeFile(options.configFile, setup.yaml);
  }
  if (setup.updateConf !== undefined) {
    const path = join(dir, `update-${n}.conf`);
    await writeFile(path, setup.updateConf);
    options.updateConfFiles = [path];
  }
  try {
    const config = await loadAgentConfig(options);
    return { error: null, warnings: config.warnings };
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    return { error, warnings: [] };
  }
}

async function failure(setup: Setup): Promise<string> {
  const { error } = await attempt(setup);
  if (error === null) throw new Error('expected loadAgentConfig to fail');
  if (!isSluiceError(error)) throw error;
  expect(error.kind).toBe('invalid-config');
  return error.message;
}

describe('blank windows are refused everywhere', () => {
  it.each<[string, Setup]>([
    [
      'a blank locksmith start and length in the file',
      { yaml: 'windows: {start: " ", length: " "}\n' },
    ],
    ['a blank spec in the file', { yaml: 'windows: " "\n' }],
    ['a blank spec in a list', { yaml: 'windows: ["Mon 04:00+1h", " "]\n' }],
    [
      'blank update.conf values',
      { updateConf: 'REBOOT_WINDOW_START=" "\nREBOOT_WINDOW_LENGTH=" "\n' },
    ],
    ['a blank variable', { env: { SLUICE_WINDOW: ' \t' } }],
    ['a blank flag', { flags: { window: [''] } }],
  ])('%s', async (_name, setup) => {
    expect(await failure(setup)).toMatch(/empty/);
  });

  it('still reads "always", an empty list, and no window at all as always open', async () => {
    for (const setup of [{ yaml: 'windows: always\n' }, { yaml: 'windows: []\n' }, {}]) {
      expect((await attempt(setup)).error).toBeNull();
    }
  });
});

/** An endpoint given in each place an endpoint can come from: file, variable, update.conf. */
const endpointIn = (endpoint: string) => [
  { yaml: `etcd:\n  endpoints: [${JSON.stringify(endpoint)}]\n` },
  { env: { SLUICE_ENDPOINTS: endpoint } },
  { updateConf: `LOCKSMITHD_ENDPOINT=${endpoint}\n` },
];

describe('messages never echo secrets', () => {
  it.each([
    'http://u:s3cretpw@h:99999',
    'HTTP://u:s3cretpw@h:2379',
    'ftp://u:s3cretpw@h',
    'u:s3cretpw@h:99999',
    'http://u:s3cretpw@h:2379/path',
    'http://u:s3cret@pw@h:1',
  ])('an invalid endpoint with credentials: %s', async (endpoint) => {
    for (const setup of endpointIn(endpoint)) {
      const message = await failure(setup);
      expect(message).not.toContain('s3cret');
      expect(message).toMatch(/endpoint/);
    }
  });

  it.each([
    'http://127.0.0.1:2379/?password=s3cretpw',
    'http://127.0.0.1:2379/s3cretpw',
    'https://127.0.0.1:2379#s3cretpw',
    '127.0.0.1:2379/?token=s3cretpw',
    'http://127.0.0.1:99999/?token=s3cretpw',
  ])('an endpoint with a path, query or fragment, which may hold a token: %s', async (endpoint) => {
    for (const setup of endpointIn(endpoint)) {
      const message = await failure(setup);
      expect(message).not.toContain('s3cret');
      expect(message).toMatch(
        /"(https?:\/\/)?127\.0\.0\.1:(2379|99999)\/…" (has a path or query|is not a valid URL)/,
      );
    }
  });

  it('does not echo an unknown key that holds a one-line JSON-style config', async () => {
    const yaml = 'etcd:{"password":"s3cretpw","group":"web"}: 1\n';
    const message = await failure({ yaml });
    expect(message).not.toContain('s3cretpw');
    expect(message).toMatch(/unknown key/);
    expect(message).toMatch(/line 1/);
  });

  it('cuts long keys and values in messages', async () => {
    const long = 'x'.repeat(5000);
    for (const setup of [
      { yaml: `${long}: 1\n` },
      { yaml: `strategy: ${long}\n` },
      { yaml: `windows: "Mon ${long}"\n` },
      { yaml: `windowZone: ${long}\n` },
    ]) {
      expect((await failure(setup)).length).toBeLessThan(400);
    }
  });

  it('names a bad window zone', async () => {
    expect(await failure({ yaml: 'windowZone: Europe/Berln\n' })).toContain('"Europe/Berln"');
  });

  const password = fc.stringMatching(/^[A-Za-z0-9!#%&*+.=?^_~-]{8,24}$/);

  /** Where the password is given. */
  const given = (pw: string): Setup[] => [
    { yaml: `etcd:\n  password: ${JSON.stringify(pw)}\n` },
    { env: { SLUICE_PASSWORD: pw } },
    { env: { LOCKSMITHD_ETCD_PASSWORD: pw } },
    { env: { LOCKSMITHCTL_ETCD_PASSWORD: pw } },
    { flags: { password: pw } },
    { updateConf: `LOCKSMITHD_ETCD_PASSWORD=${pw}\n` },
    { updateConf: `LOCKSMITHD_ETCD_PASSWORD="${pw}\n` },
    { yaml: `etcd:\n  endpoints: [${JSON.stringify(`http://u:${pw}@h:2379`)}]\n` },
    { env: { SLUICE_ENDPOINTS: `https://root:${pw}@10.0.0.1:99999` } },
    { yaml: `checks:\n  pre:\n    - http: ${JSON.stringify(`http://u:${pw}@x/`)}\n` },
  ];

  /** What else is wrong: often the password pasted into the wrong place. */
  const broken = (pw: string): Setup[] => [
    { yaml: `etcd:\n  group: ${JSON.stringify(pw)}\n` },
    { yaml: `etcd:\n  username: [${JSON.stringify(pw)}]\n` },
    { yaml: `${JSON.stringify(pw)}: 1\n` },
    { yaml: `etcd:\n  ${JSON.stringify(`password ${pw}`)}: 1\n` },
    { yaml: `etcd:{"password":${JSON.stringify(pw)},"group":"web"}: 1\n` },
    { yaml: `etcd: {"password": ${JSON.stringify(pw)} "group": "web"}\n` },
    { yaml: `etcd:\n  password: ${JSON.stringify(pw)}: x\n` },
    { yaml: `strategy: ${JSON.stringify(pw)}\n` },
    { yaml: `windows: ${JSON.stringify(pw)}\n` },
    { yaml: `windowZone: ${JSON.stringify(pw)}\n` },
    { yaml: `log:\n  level: ${JSON.stringify(pw)}\n` },
    { yaml: `checks:\n  pre:\n    - { command: "true", timeout: ${JSON.stringify(pw)} }\n` },
    { env: { SLUICE_GROUP: pw } },
    { env: { SLUICE_HOLD_TTL: pw } },
    { env: { SLUICE_WINDOW: `Mon ${pw}` } },
    { flags: { node: `${pw}/x` } },
    { flags: { metricsListen: pw } },
    { updateConf: `LOCKSMITHD_GROUP=${pw} x\n` },
    { updateConf: `REBOOT_STRATEGY=${pw}\n` },
    { updateConf: `LOCKSMITHD_REBOOT_WINDOW_START=${pw}\nLOCKSMITHD_REBOOT_WINDOW_LENGTH=1h\n` },
    { updateConf: `${pw} =\n` },
  ];

  /** Joins two setups: YAML documents merged as text, update.conf lines concatenated. */
  function join2(a: Setup, b: Setup): Setup {
    const yaml = [a.yaml, b.yaml].filter((y): y is string => y !== undefined);
    const conf = [a.updateConf, b.updateConf].filter((y): y is string => y !== undefined);
    return {
      ...(yaml.length > 0 ? { yaml: yaml.join('') } : {}),
      ...(conf.length > 0 ? { updateConf: conf.join('\n') } : {}),
      env: { ...a.env, ...b.env },
      flags: { ...a.flags, ...b.flags },
    };
  }

  it('no error or warning contains a password given in any field, whatever else is wrong', async () => {
    await fc.assert(
      fc.asyncProperty(password, fc.nat(), fc.nat(), fc.boolean(), async (pw, g, b, twice) => {
        const where = given(pw);
        const wrong = broken(pw);
        let setup = join2(where[g % where.length]!, wrong[b % wrong.length]!);
        if (twice) setup = join2(setup, where[(g + 1) % where.length]!);
        const { error, warnings } = await attempt(setup);
        const said = [error?.message ?? '', ...warnings];
        if (error && isSluiceError(error)) said.push(error.where ?? '');
        for (const text of said) expect(text).not.toContain(pw);
      }),
      { numRuns: 300 },
    );
  });
});

describe('size and nesting caps', () => {
  it('refuses YAML nested deeper than the cap quickly, with a clear error', async () => {
    for (const yaml of [
      `windows: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`,
      `windows:\n${'- '.repeat(100_000)}x\n`,
      `windows: ${'['.repeat(MAX_CONFIG_DEPTH + 1)}${']'.repeat(MAX_CONFIG_DEPTH + 1)}\n`,
    ]) {
      const started = performance.now();
      const message = await failure({ yaml });
      expect(performance.now() - started).toBeLessThan(2000);
      expect(message).toMatch(/nested more than \d+ levels/);
      expect(message.length).toBeLessThan(300);
    }
  });

  it('refuses config files beyond the size cap', async () => {
    const comment = `# ${'x'.repeat(MAX_CONFIG_FILE_BYTES)}\n`;
    expect(await failure({ yaml: `strategy: reboot\n${comment}` })).toMatch(
      new RegExp(`larger than ${MAX_CONFIG_FILE_BYTES / 1024} KiB`),
    );
    expect(await failure({ updateConf: `REBOOT_STRATEGY=reboot\n${comment}` })).toMatch(
      /larger than/,
    );
  });

  it('refuses anything beyond the caps, and accepts what is within them', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300 }), async (depth) => {
        const yaml = `windows: ${'['.repeat(depth)}"Mon 04:00+1h"${']'.repeat(depth)}\n`;
        const { error } = await attempt({ yaml });
        // windows takes a spec or a list of specs: depth 1 is valid, deeper is the wrong shape.
        if (depth + 1 > MAX_CONFIG_DEPTH) expect(error?.message).toMatch(/nested more than/);
        else if (depth === 1) expect(error).toBeNull();
        else expect(error?.message).not.toMatch(/nested more than/);
      }),
      { numRuns: 60 },
    );
  });
});
