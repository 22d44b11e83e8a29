import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSluiceError, windowStateAll } from '@sluice/core';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AGENT_FLAGS,
  type AgentConfig,
  type AgentFlags,
  addAgentFlags,
  agentFlagsHelp,
  DEFAULT_CONFIG_FILE,
  type LoadOptions,
  loadAgentConfig,
  parseListenAddress,
  redactConfig,
} from './config/index.js';
import { DEFAULT_NOTIFY } from './notify.js';

let dir: string;
let machineIdFile: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-config-'));
  machineIdFile = join(dir, 'machine-id');
  await writeFile(machineIdFile, '0123456789abcdef0123456789abcdef\n');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Setup {
  yaml?: string;
  updateConf?: string[];
  env?: NodeJS.ProcessEnv;
  flags?: AgentFlags;
  options?: Partial<LoadOptions>;
}

async function load(setup: Setup = {}): Promise<AgentConfig> {
  const options: LoadOptions = {
    env: setup.env ?? {},
    flags: setup.flags ?? {},
    updateConfFiles: [],
    machineIdFile,
    hostname: 'test-host',
    // The local zone is UTC here, whatever this machine's /etc/localtime says.
    localtimeFile: join(dir, 'no-localtime'),
    ...setup.options,
  };
  if (setup.yaml !== undefined) {
    options.configFile = join(dir, 'sluiced.yaml');
    await writeFile(options.configFile, setup.yaml);
  }
  if (setup.updateConf !== undefined) {
    options.updateConfFiles = await Promise.all(
      setup.updateConf.map(async (text, i) => {
        const path = join(dir, `update-${i}.conf`);
        await writeFile(path, text);
        return path;
      }),
    );
  }
  return loadAgentConfig(options);
}

/** Loads, expects an invalid-config error, and returns its message with the temp dir as $DIR. */
async function failure(setup: Setup): Promise<string> {
  try {
    await load(setup);
  } catch (error) {
    if (!isSluiceError(error)) throw error;
    expect(error.kind).toBe('invalid-config');
    return error.message.replaceAll(dir, '$DIR');
  }
  throw new Error('expected loadAgentConfig to fail');
}

describe('loadAgentConfig: defaults', () => {
  it('fills in every default', async () => {
    const cfg = await load();
    expect(cfg).toEqual({
      node: {
        id: '0123456789abcdef0123456789abcdef',
        hostname: 'test-host',
        domain: null,
        tokenFile: '/var/lib/sluice/instance',
      },
      clock: { maxSkewMs: 60_000 },
      etcd: {
        endpoints: ['http://127.0.0.1:2379'],
        prefix: '/sluice/v1/',
        group: 'default',
        sessionTTL: 30,
        holdTTL: 3600,
      },
      strategy: 'etcd-lock',
      windows: [],
      blackouts: [],
      windowZones: {
        sluice: { zone: 'UTC', from: 'default' },
        locksmith: { zone: 'UTC', from: 'default' },
      },
      sources: {
        updateEngine: true,
        sentinel: '/run/reboot-required',
        command: null,
        manual: true,
        rpmOstree: false,
        bootc: null,
        sysupdate: null,
        needrestart: null,
        dnf: null,
      },
      reboot: {
        method: 'logind',
        command: 'systemctl reboot',
        softReboot: 'auto',
        inhibitors: 'wait',
        inhibitorWaitMs: 600_000,
        loopLimit: 3,
        warnDelayMs: 0,
        warnMessage: 'System reboot in %s: OS update applied (sluice)',
        expectedSlotMs: 'auto',
      },
      checks: {
        pre: [],
        drain: null,
        post: [],
        postDeadlineMs: 600_000,
        postIntervalMs: 10_000,
        releaseDelayMs: 0,
      },
      dbus: { address: 'system' },
      metrics: { listen: '127.0.0.1:9466', allowRemote: false },
      log: { level: 'info' },
      notify: DEFAULT_NOTIFY,
      origins: { 'node.id': `file ${machineIdFile}` },
      warnings: [],
    });
  });

  it.skipIf(existsSync(DEFAULT_CONFIG_FILE))(
    'is fine without the default config file',
    async () => {
      const cfg = await loadAgentConfig({ env: {}, updateConfFiles: [], machineIdFile });
      expect(cfg.strategy).toBe('etcd-lock');
    },
  );

  it('refuses a bad node.domain and a bad blackout, naming the setting', async () => {
    await expect(load({ yaml: 'node:\n  domain: "rack 12"\n' })).rejects.toThrow(/node\.domain/);
    await expect(load({ env: { SLUICE_BLACKOUT: '2026-02-30' } })).rejects.toThrow(
      /SLUICE_BLACKOUT.*blackouts.*"2026-02-30" is not a date/,
    );
    // A blackout alone makes a spec of its own: always open but on those days.
    const cfg = await load({ yaml: 'blackouts: ["2027-01-01"]\n' });
    expect(cfg.windows).toMatchObject([{ windows: [], blackouts: [{ from: '2027-01-01' }] }]);
  });

  it('reads the example in the module comment', async () => {
    const source = await readFile(new URL('./config/index.ts', import.meta.url), 'utf8');
    const block = /```yaml\n([\s\S]*?)\n \* ```/.exec(source)?.[1];
    expect(block).toBeDefined();
    const yaml = block!.replace(/^ \* ?/gm, '');
    const cfg = await load({ yaml });
    expect(cfg.node).toEqual({
      id: 'web-17',
      hostname: 'web-17.example',
      domain: 'rack-12',
      tokenFile: '/var/lib/sluice/instance',
    });
    expect(cfg.clock).toEqual({ maxSkewMs: 60_000 });
    expect(cfg.etcd).toMatchObject({
      endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379'],
      group: 'web',
      passwordFile: '/etc/sluice/etcd-password',
      sessionTTL: 30,
      holdTTL: 3600,
    });
    expect(cfg.windows).toHaveLength(1);
    expect(cfg.windows[0]!.windows).toHaveLength(3);
    expect(cfg.windows[0]!.windows[0]!.zone).toBe('Europe/Berlin');
    expect(cfg.windows[0]!.windows[1]!.zone).toBe('UTC');
    expect(cfg.sources.command).toEqual({
      run: '/usr/local/bin/needs-reboot',
      intervalMs: 300_000,
    });
    expect(cfg.checks.pre).toEqual([
      {
        type: 'prometheus',
        name: 'low-traffic',
        url: 'http://prom:9090',
        query: 'sum(rate(http_requests_total[5m])) > 100',
        timeoutMs: 10_000,
      },
      {
        type: 'command',
        name: 'command /usr/local/bin/ok-to-reboot',
        command: '/usr/local/bin/ok-to-reboot',
        timeoutMs: 30_000,
      },
    ]);
    expect(cfg.checks.drain).toMatchObject({ type: 'command', timeoutMs: 600_000 });
    expect(cfg.checks.post).toEqual([
      { type: 'http', name: 'app', url: 'http://127.0.0.1:8080/healthz', timeoutMs: 5000 },
    ]);
    expect(cfg.origins['etcd.group']).toMatch(
      new RegExp(`^config file ${join(dir, 'sluiced.yaml')}:\\d+$`),
    );
  });
});

describe('loadAgentConfig: precedence', () => {
  const updateConf = [
    'REBOOT_STRATEGY=reboot',
    'LOCKSMITHD_GROUP=from-update-conf',
    'LOCKSMITHD_ENDPOINT=https://a:2379,https://b:2379',
    'LOCKSMITHD_REBOOT_WINDOW_START="Thu 04:00"',
    'LOCKSMITHD_REBOOT_WINDOW_LENGTH=1h30m',
  ].join('\n');

  it('defaults < update.conf < file < environment < flags', async () => {
    const yaml = 'etcd:\n  group: from-file\n  sessionTTL: 40s\nlog:\n  level: warn\n';
    const env = { SLUICE_GROUP: 'from-env', SLUICE_SESSION_TTL: '50s' };
    const flags: AgentFlags = { group: 'from-flag' };

    const onlyConf = await load({ updateConf: [updateConf] });
    expect(onlyConf.etcd.group).toBe('from-update-conf');
    expect(onlyConf.strategy).toBe('reboot');
    expect(onlyConf.etcd.endpoints).toEqual(['https://a:2379', 'https://b:2379']);
    expect(onlyConf.windows[0]!.windows).toEqual([
      { days: [4], startMinute: 240, lengthMs: 5_400_000, zone: 'UTC' },
    ]);
    expect(onlyConf.origins.strategy).toBe(`${join(dir, 'update-0.conf')}:1 (REBOOT_STRATEGY)`);
    expect(onlyConf.origins.windows).toBe(
      `${join(dir, 'update-0.conf')}:4 (LOCKSMITHD_REBOOT_WINDOW_START)`,
    );

    const withFile = await load({ updateConf: [updateConf], yaml });
    expect(withFile.etcd.group).toBe('from-file');
    expect(withFile.etcd.sessionTTL).toBe(40);
    expect(withFile.etcd.endpoints).toEqual(['https://a:2379', 'https://b:2379']);

    const withEnv = await load({ updateConf: [updateConf], yaml, env });
    expect(withEnv.etcd.group).toBe('from-env');
    expect(withEnv.etcd.sessionTTL).toBe(50);
    expect(withEnv.log.level).toBe('warn');

    const all = await load({ updateConf: [updateConf], yaml, env, flags });
    expect(all.etcd.group).toBe('from-flag');
    expect(all.etcd.sessionTTL).toBe(50);
    expect(all.origins).toMatchObject({
      'etcd.group': 'flag --group',
      'etcd.sessionTTL': 'environment SLUICE_SESSION_TTL',
      'log.level': `config file ${join(dir, 'sluiced.yaml')}:5`,
      'etcd.endpoints': `${join(dir, 'update-0.conf')}:3 (LOCKSMITHD_ENDPOINT)`,
    });
  });

  it('lets a later update.conf win and collects warnings', async () => {
    const cfg = await load({
      updateConf: [
        'LOCKSMITHD_GROUP=coreos\nREBOOT_STRATEGY=off',
        'LOCKSMITHD_GROUP=flatcar\nLOCKSMITHD_TYPO=1',
      ],
    });
    expect(cfg.etcd.group).toBe('flatcar');
    expect(cfg.strategy).toBe('off');
    expect(cfg.warnings).toEqual([
      `${join(dir, 'update-1.conf')}:2: ignoring unknown key LOCKSMITHD_TYPO`,
    ]);
  });

  it('skips update.conf files that do not exist', async () => {
    const cfg = await load({ options: { updateConfFiles: [join(dir, 'nope.conf')] } });
    expect(cfg.origins).toEqual({ 'node.id': `file ${machineIdFile}` });
  });

  it('maps best-effort to etcd-lock when endpoints are configured, else to reboot', async () => {
    expect((await load({ updateConf: ['REBOOT_STRATEGY=best-effort'] })).strategy).toBe('reboot');
    const withEtcd = await load({
      updateConf: ['REBOOT_STRATEGY=best-effort\nLOCKSMITHD_ENDPOINT=https://etcd:2379'],
    });
    expect(withEtcd.strategy).toBe('etcd-lock');
    const endpointsFromEnv = await load({
      updateConf: ['REBOOT_STRATEGY=best-effort'],
      env: { LOCKSMITHD_ENDPOINT: 'http://e:2379' },
    });
    expect(endpointsFromEnv.strategy).toBe('etcd-lock');
  });

  it('accepts CA-only TLS from update.conf', async () => {
    const cfg = await load({
      updateConf: ['LOCKSMITHD_ENDPOINT=https://etcd:2379\nLOCKSMITHD_ETCD_CAFILE=/etc/ssl/ca.pem'],
    });
    expect(cfg.etcd.cacert).toBe('/etc/ssl/ca.pem');
    expect(cfg.etcd.cert).toBeUndefined();
  });

  it('reads locksmith environment names and every SLUICE_ variable', async () => {
    const cfg = await load({
      env: {
        LOCKSMITHD_ENDPOINT: 'http://x:2379,http://y:2379',
        LOCKSMITHD_ETCD_USERNAME: 'root',
        SLUICE_NODE: 'node-1',
        SLUICE_HOSTNAME: 'node-1.example',
        SLUICE_DOMAIN: 'eu-west-1b',
        SLUICE_BLACKOUT: '2026-12-24..2026-12-26 Europe/Berlin',
        SLUICE_STRATEGY: 'reboot',
        SLUICE_WINDOW: 'Mon 04:00+1h',
        SLUICE_WINDOW_ZONE: 'America/New_York',
        SLUICE_SESSION_TTL: '15s',
        SLUICE_HOLD_TTL: '2h',
        SLUICE_DBUS_ADDRESS: 'unix:path=/tmp/bus',
        SLUICE_METRICS_LISTEN: 'off',
        SLUICE_LOG_LEVEL: 'debug',
        SLUICE_REBOOT_METHOD: 'command',
        SLUICE_REBOOT_COMMAND: 'shutdown -r now',
        SLUICE_WARN_DELAY: '5m',
        SLUICE_WARN_MESSAGE: 'bye in %s',
        SLUICE_EXPECTED_SLOT: '45m',
        SLUICE_SENTINEL: 'off',
        SLUICE_RELEASE_DELAY: '30s',
        SLUICE_POST_DEADLINE: '20m',
        SLUICE_POST_INTERVAL: '5s',
        SLUICE_UPDATE_ENGINE: 'false',
        SLUICE_MANUAL: 'no',
        SLUICE_SOURCE_COMMAND: 'test -e /x',
        SLUICE_SOURCE_COMMAND_INTERVAL: '1m',
        SLUICE_TOKEN_FILE: '/srv/sluice/instance',
        SLUICE_MAX_CLOCK_SKEW: '2m',
      },
    });
    expect(cfg.etcd).toMatchObject({
      endpoints: ['http://x:2379', 'http://y:2379'],
      username: 'root',
      sessionTTL: 15,
      holdTTL: 7200,
    });
    expect(cfg.node).toEqual({
      id: 'node-1',
      hostname: 'node-1.example',
      domain: 'eu-west-1b',
      tokenFile: '/srv/sluice/instance',
    });
    expect(cfg.blackouts).toEqual([
      { from: '2026-12-24', to: '2026-12-26', zone: 'Europe/Berlin' },
    ]);
    // The node's window spec carries its blackouts.
    expect(cfg.windows[0]!.blackouts).toEqual(cfg.blackouts);
    expect(cfg.clock).toEqual({ maxSkewMs: 120_000 });
    expect(cfg.strategy).toBe('reboot');
    expect(cfg.windows[0]!.windows[0]).toMatchObject({ days: [1], zone: 'America/New_York' });
    expect(cfg.windows[0]!.source).toBe('environment SLUICE_WINDOW: windows');
    expect(cfg.dbus.address).toBe('unix:path=/tmp/bus');
    expect(cfg.metrics.listen).toBeNull();
    expect(cfg.log.level).toBe('debug');
    expect(cfg.reboot).toEqual({
      method: 'command',
      command: 'shutdown -r now',
      softReboot: 'auto',
      inhibitors: 'wait',
      inhibitorWaitMs: 600_000,
      loopLimit: 3,
      warnDelayMs: 300_000,
      warnMessage: 'bye in %s',
      expectedSlotMs: 45 * 60_000,
    });
    expect(cfg.sources).toEqual({
      updateEngine: false,
      sentinel: null,
      command: { run: 'test -e /x', intervalMs: 60_000 },
      manual: false,
      rpmOstree: false,
      bootc: null,
      sysupdate: null,
      needrestart: null,
      dnf: null,
    });
    expect(cfg.checks).toMatchObject({
      releaseDelayMs: 30_000,
      postDeadlineMs: 1_200_000,
      postIntervalMs: 5000,
    });
    expect(cfg.origins['etcd.endpoints']).toBe('environment LOCKSMITHD_ENDPOINT');
  });

  it('takes windowZone from the file for a window spec from a flag', async () => {
    const cfg = await load({
      yaml: 'windowZone: Asia/Tokyo\nwindows: "Sat 03:00+1h"\n',
      flags: { window: ['Mon-Fri 22:00-02:00', 'Sun 12:00+2h UTC'] },
    });
    expect(cfg.windows).toHaveLength(1);
    expect(cfg.windows[0]!.windows.map((w) => w.zone)).toEqual(['Asia/Tokyo', 'UTC']);
    expect(cfg.windows[0]!.source).toBe('flag --window: windows');
  });

  it('reads windows in the local zone with windowZone local; locksmith windows follow windowZone when it is set', async () => {
    const local = await load({
      yaml: 'windowZone: local\nwindows: ["Sat 03:00+1h", "Sun 03:00+1h UTC"]\n',
      env: { TZ: 'America/Los_Angeles' },
    });
    expect(local.windows[0]!.windows.map((w) => w.zone)).toEqual(['America/Los_Angeles', 'UTC']);
    expect(local.windowZones.sluice).toMatchObject({ zone: 'America/Los_Angeles' });
    // Without windowZone, sluice's syntax is UTC and locksmith's the local zone.
    const split = await load({
      yaml: 'windows: ["Sat 03:00+1h", { start: "Thu 04:00", length: 1h }]\n',
      env: { TZ: 'America/Los_Angeles' },
    });
    expect(split.windows[0]!.windows.map((w) => w.zone)).toEqual(['UTC', 'America/Los_Angeles']);
    // An explicit windowZone wins for locksmith's settings too, update.conf included.
    const pinned = await load({
      yaml: 'windowZone: Europe/Berlin\n',
      updateConf: ['REBOOT_WINDOW_START=Thu 04:00\nREBOOT_WINDOW_LENGTH=1h\n'],
      env: { TZ: 'America/Los_Angeles' },
    });
    expect(pinned.windows[0]!.windows.map((w) => w.zone)).toEqual(['Europe/Berlin']);
  });

  it('joins window entries into one spec that is open when any entry is', async () => {
    const cfg = await load({
      yaml: 'windows:\n  - Mon 04:00+1h\n  - { start: "Thu 04:00", length: 1h }\n',
    });
    const monday = new Date('2024-01-01T04:30:00Z');
    const thursday = new Date('2024-01-04T04:30:00Z');
    const tuesday = new Date('2024-01-02T04:30:00Z');
    expect(windowStateAll(cfg.windows, monday).open).toBe(true);
    expect(windowStateAll(cfg.windows, thursday).open).toBe(true);
    expect(windowStateAll(cfg.windows, tuesday).open).toBe(false);
  });

  it('reads reboot.expectedSlot as a duration, auto or off, and names a bad one', async () => {
    expect((await load({ yaml: 'reboot: { expectedSlot: 20m }\n' })).reboot.expectedSlotMs).toBe(
      20 * 60_000,
    );
    expect(
      (await load({ yaml: 'reboot: { expectedSlot: off }\n' })).reboot.expectedSlotMs,
    ).toBeNull();
    expect((await load({ yaml: 'reboot: { expectedSlot: auto }\n' })).reboot.expectedSlotMs).toBe(
      'auto',
    );
    const bad = await load({ flags: { expectedSlot: 'soon' } }).catch((e: unknown) => e);
    expect(isSluiceError(bad) && bad.where).toBe('--expected-slot');
    expect(String((bad as Error).message)).toMatch(
      /reboot\.expectedSlot: expected a duration like 30m, auto or off/,
    );
  });

  it('treats "always" and an empty list as always open', async () => {
    expect((await load({ yaml: 'windows: always\n' })).windows).toEqual([]);
    expect((await load({ yaml: 'windows: []\n' })).windows).toEqual([]);
    expect(
      (await load({ yaml: 'windows: { start: "04:00", length: 2h }\n' })).windows,
    ).toHaveLength(1);
  });

  it('lets a file null turn sources and metrics off', async () => {
    const cfg = await load({ yaml: 'sources:\n  sentinel: null\nmetrics:\n  listen: null\n' });
    expect(cfg.sources.sentinel).toBeNull();
    expect(cfg.metrics.listen).toBeNull();
  });

  it('allows a remote metrics address only with allowRemote', async () => {
    expect(await failure({ env: { SLUICE_METRICS_LISTEN: '0.0.0.0:9466' } })).toMatch(
      /^environment SLUICE_METRICS_LISTEN: metrics\.listen: "0\.0\.0\.0:9466" is not a loopback address/,
    );
    const cfg = await load({
      yaml: 'metrics:\n  allowRemote: true\n',
      env: { SLUICE_METRICS_LISTEN: '0.0.0.0:9466' },
    });
    expect(cfg.metrics).toEqual({ listen: '0.0.0.0:9466', allowRemote: true });
    expect((await load({ flags: { metricsListen: '[::1]:9000' } })).metrics.listen).toBe(
      '[::1]:9000',
    );
    expect((await load({ flags: { metricsListen: 'localhost:0' } })).metrics.listen).toBe(
      'localhost:0',
    );
  });

  it('works with commander through addAgentFlags', async () => {
    const program = addAgentFlags(new Command()).exitOverride();
    program.parse(
      [
        '--group',
        'g1',
        '--endpoints',
        'http://a:2379,http://b:2379',
        '--window',
        'Mon 04:00+1h',
        '--window',
        'Tue 04:00+1h',
        '--no-update-engine',
        '--session-ttl',
        '20s',
      ],
      { from: 'user' },
    );
    const flags = program.opts<AgentFlags>();
    expect(flags.manual).toBeUndefined();
    const cfg = await load({ yaml: 'sources:\n  manual: false\n', flags });
    expect(cfg.etcd.group).toBe('g1');
    expect(cfg.etcd.endpoints).toEqual(['http://a:2379', 'http://b:2379']);
    expect(cfg.etcd.sessionTTL).toBe(20);
    expect(cfg.windows[0]!.windows).toHaveLength(2);
    expect(cfg.sources.updateEngine).toBe(false);
    expect(cfg.sources.manual).toBe(false);
    expect(AGENT_FLAGS.map((f) => f.name)).toEqual(
      expect.arrayContaining([
        'endpoints',
        'user',
        'passwordFile',
        'holdTtl',
        'warnDelay',
        'releaseDelay',
      ]),
    );
    expect(agentFlagsHelp()).toContain('--session-ttl <duration>');
  });
});

describe('AGENT_FLAGS', () => {
  it('gives each setting its flag and environment variables', () => {
    const env = AGENT_FLAGS.flatMap((f) => f.env);
    for (const name of [
      'SLUICE_ENDPOINTS',
      'SLUICE_CACERT',
      'LOCKSMITHD_ENDPOINT',
      'SLUICE_NODE',
      'SLUICE_STRATEGY',
      'SLUICE_WINDOW',
      'SLUICE_SESSION_TTL',
      'SLUICE_HOLD_TTL',
      'SLUICE_DBUS_ADDRESS',
      'SLUICE_METRICS_LISTEN',
      'SLUICE_LOG_LEVEL',
      'SLUICE_REBOOT_METHOD',
      'SLUICE_REBOOT_COMMAND',
      'SLUICE_WARN_DELAY',
      'SLUICE_SENTINEL',
      'SLUICE_RELEASE_DELAY',
      'SLUICE_CONFIG',
    ]) {
      expect(env).toContain(name);
    }
    const flags = AGENT_FLAGS.map((f) => f.flag.split(' ')[0]);
    expect(flags).toEqual(expect.arrayContaining(['--user', '--password-file', '--hold-ttl']));
    expect(new Set(flags).size).toBe(flags.length);
    expect(agentFlagsHelp()).toMatch(
      /--\[no-\]update-engine +SLUICE_UPDATE_ENGINE +sources\.updateEngine/,
    );
  });
});

describe('loadAgentConfig: errors name the key and where it came from', () => {
  const FILE = 'config file $DIR/sluiced.yaml';

  it.each([
    {
      name: 'a bad check timeout in the file',
      setup: { yaml: 'checks:\n  pre:\n    - command: "true"\n      timeout: soon\n' },
      message: `${FILE}, line 4: checks.pre[0].timeout: expected a duration like 30s, got "soon"`,
    },
    {
      name: 'a number where a duration belongs',
      setup: { yaml: 'reboot:\n  warnDelay: 30\n' },
      message: `${FILE}, line 2: reboot.warnDelay: expected a duration like 30s, got the number 30 (add a unit: "30s")`,
    },
    {
      name: 'a duration with an unknown unit',
      setup: { yaml: 'checks:\n  postDeadline: 2d\n' },
      message: `${FILE}, line 2: checks.postDeadline: expected a duration like 30s, got "2d" (unknown unit "d" (use h, m, s or ms, e.g. 1h30m))`,
    },
    {
      name: 'an unknown top-level key',
      setup: { yaml: 'strategi: reboot\n' },
      message: `${FILE}, line 1: strategi: unknown key (did you mean "strategy"?)`,
    },
    {
      name: 'an unknown nested key',
      setup: { yaml: 'checks:\n  pre:\n    - command: "true"\n      timout: 5s\n' },
      message: `${FILE}, line 4: checks.pre[0].timout: unknown key (did you mean "timeout"?)`,
    },
    {
      name: 'an unknown etcd key',
      setup: { yaml: 'etcd:\n  endpoint: http://x:2379\n' },
      message: `${FILE}, line 2: etcd.endpoint: unknown key (did you mean "endpoints"?)`,
    },
    {
      name: 'a check with two kinds',
      setup: { yaml: 'checks:\n  post:\n    - { command: "true", http: "http://x/" }\n' },
      message: `${FILE}, line 3: checks.post[0]: has both command and http; one per check`,
    },
    {
      name: 'a prometheus check without a query',
      setup: { yaml: 'checks:\n  drain: { prometheus: "http://p:9090" }\n' },
      message: `${FILE}, line 2: checks.drain.query: is required with prometheus`,
    },
    {
      name: 'a check URL that is not http',
      setup: { yaml: 'checks:\n  pre:\n    - http: "ftp://x/"\n' },
      message: `${FILE}, line 3: checks.pre[0].http: expected an http:// or https:// URL`,
    },
    {
      name: 'a bad locksmith window in the file',
      setup: { yaml: 'windows:\n  - Mon 04:00+1h\n  - { start: "Thu 04:00", lenght: 1h }\n' },
      message: `${FILE}, line 3: windows[1].lenght: unknown key (did you mean "length"?)`,
    },
    {
      name: 'a window of the wrong type',
      setup: { yaml: 'windows: 5\n' },
      message: `${FILE}, line 1: windows: expected a window spec like "Mon-Fri 22:00-02:00", a list of them, or { start, length }`,
    },
    {
      name: 'a section of the wrong type',
      setup: { yaml: 'reboot: now\n' },
      message: `${FILE}, line 1: reboot: expected a mapping, got a string`,
    },
    {
      name: 'an invalid group from the environment',
      setup: { env: { SLUICE_GROUP: 'no spaces' } },
      message: 'environment SLUICE_GROUP: etcd.group: must be letters, digits, . _ : @ -',
    },
    {
      name: 'an invalid group from a locksmith variable',
      setup: { env: { LOCKSMITHD_GROUP: '-x y' } },
      message: 'environment LOCKSMITHD_GROUP: etcd.group: must be letters, digits, . _ : @ -',
    },
    {
      name: 'a TTL that is not whole seconds',
      setup: { env: { SLUICE_SESSION_TTL: '1500ms' } },
      message:
        'environment SLUICE_SESSION_TTL: etcd.sessionTTL: expected a duration like 30s, got "1500ms" (a lease TTL is whole seconds, at least 1s)',
    },
    {
      name: 'a bad boolean in the environment',
      setup: { env: { SLUICE_UPDATE_ENGINE: 'maybe' } },
      message:
        'environment SLUICE_UPDATE_ENGINE: sources.updateEngine: expected true or false, got "maybe"',
    },
    {
      name: 'a bad metrics address',
      setup: { env: { SLUICE_METRICS_LISTEN: '9466' } },
      message:
        'environment SLUICE_METRICS_LISTEN: metrics.listen: expected host:port such as 127.0.0.1:9466 or [::1]:9466, got "9466"',
    },
    {
      name: 'an unknown strategy from a flag',
      setup: { flags: { strategy: 'yolo' } },
      message:
        'flag --strategy: strategy: expected etcd-lock, reboot, off or best-effort, got "yolo"',
    },
    {
      name: 'an unknown log level from a flag',
      setup: { flags: { logLevel: 'verbose' } },
      message: 'flag --log-level: log.level: expected debug, info, warn or error, got "verbose"',
    },
    {
      name: 'a relative sentinel path from a flag',
      setup: { flags: { sentinel: 'reboot-required' } },
      message:
        'flag --sentinel: sources.sentinel: expected an absolute path, got "reboot-required"',
    },
    {
      name: 'a bad window from a flag',
      setup: { flags: { window: ['Mon 04:00+1h', 'Thx 04:00+1h'] } },
      message:
        'flag --window: windows: invalid reboot window: unknown day "Thx" (use Mon..Sun or full names) in entry "Thx 04:00+1h"',
    },
    {
      name: 'a bad window zone',
      setup: { env: { SLUICE_WINDOW_ZONE: 'Mars/Olympus' } },
      message:
        'environment SLUICE_WINDOW_ZONE: windowZone: expected an IANA time zone such as Europe/Berlin or UTC, or local, got "Mars/Olympus"',
    },
    {
      name: '"always" mixed with windows',
      setup: { flags: { window: ['always', 'Mon 04:00+1h'] } },
      message: 'flag --window: windows: "always" cannot be combined with other windows',
    },
    {
      name: 'an unsupported D-Bus address',
      setup: { env: { SLUICE_DBUS_ADDRESS: 'unix:abstract=/tmp/x' } },
      message:
        'environment SLUICE_DBUS_ADDRESS: dbus.address: expected "system" or a D-Bus address such as unix:path=/run/dbus/system_bus_socket (unix:abstract= is not supported)',
    },
    {
      name: 'an invalid node id',
      setup: { flags: { node: 'has/slash' } },
      message:
        'flag --node: node.id: must be letters, digits and . _ : @ -, starting with a letter or digit',
    },
    {
      name: 'a client certificate without its key (update.conf)',
      setup: { updateConf: ['GROUP=stable\nLOCKSMITHD_ETCD_CERTFILE=/etc/ssl/c.pem'] },
      message:
        '$DIR/update-0.conf:2 (LOCKSMITHD_ETCD_CERTFILE): etcd.cert: cert and key must be given together for mutual TLS',
    },
    {
      name: 'a client key without its certificate (environment)',
      setup: { env: { SLUICE_KEY: '/k.pem' } },
      message:
        'environment SLUICE_KEY: etcd.key: cert and key must be given together for mutual TLS',
    },
    {
      name: 'an invalid group in update.conf',
      setup: { updateConf: ['LOCKSMITHD_GROUP="a b"'] },
      message:
        '$DIR/update-0.conf:1 (LOCKSMITHD_GROUP): etcd.group: must be letters, digits, . _ : @ -',
    },
    {
      name: 'an update.conf syntax error',
      setup: { updateConf: ['REBOOT_STRATEGY=nope'] },
      message:
        '$DIR/update-0.conf:1: REBOOT_STRATEGY: unknown strategy "nope" (want etcd-lock, reboot, off or best-effort)',
    },
    {
      name: 'a source command without run',
      setup: { env: { SLUICE_SOURCE_COMMAND_INTERVAL: '1m' } },
      message:
        'environment SLUICE_SOURCE_COMMAND_INTERVAL: sources.command.run: is required (or set sources.command to null)',
    },
    {
      name: 'a bad value in the file even when the environment overrides it',
      setup: { yaml: 'etcd:\n  group: "bad group"\n', env: { SLUICE_GROUP: 'fine' } },
      message: `${FILE}, line 2: etcd.group: must be letters, digits, . _ : @ -`,
    },
  ])('$name', async ({ setup, message }) => {
    expect(await failure(setup)).toBe(message);
  });

  it('reports YAML syntax errors with their position', async () => {
    expect(await failure({ yaml: 'etcd:\n  group: [a\n' })).toMatch(
      /^config file \$DIR\/sluiced\.yaml: invalid YAML: .*line \d+, column \d+$/,
    );
    expect(await failure({ yaml: 'a: 1\na: 2\n' })).toMatch(
      /invalid YAML: Map keys must be unique/,
    );
    expect(await failure({ yaml: '- a\n- b\n' })).toBe(
      'config file $DIR/sluiced.yaml: expected a mapping of settings, got a list',
    );
  });

  it('refuses a missing config file that was named, saying who named it', async () => {
    const missing = join(dir, 'missing.yaml');
    expect(await failure({ options: { configFile: missing } })).toBe(
      'config file $DIR/missing.yaml: cannot read it (named by the caller): ENOENT',
    );
    expect(await failure({ env: { SLUICE_CONFIG: missing } })).toBe(
      'config file $DIR/missing.yaml: cannot read it (named by environment SLUICE_CONFIG): ENOENT',
    );
    expect(await failure({ flags: { config: missing } })).toBe(
      'config file $DIR/missing.yaml: cannot read it (named by flag --config): ENOENT',
    );
  });

  it('needs a node id when /etc/machine-id is missing', async () => {
    const message = await failure({ options: { machineIdFile: join(dir, 'none') } });
    expect(message).toBe(
      'node.id: not set, and $DIR/none is missing or empty; set node.id in the config file, SLUICE_NODE or --node',
    );
    const cfg = await load({
      options: { machineIdFile: join(dir, 'none') },
      env: { SLUICE_NODE: 'n1' },
    });
    expect(cfg.node.id).toBe('n1');
  });

  it('sets where to the file, variable or flag at fault', async () => {
    const error = await load({ env: { SLUICE_LOG_LEVEL: 'loud' } }).catch((e: unknown) => e);
    expect(isSluiceError(error) && error.where).toBe('SLUICE_LOG_LEVEL');
    const fromFlag = await load({ flags: { holdTtl: 'x' } }).catch((e: unknown) => e);
    expect(isSluiceError(fromFlag) && fromFlag.where).toBe('--hold-ttl');
  });
});

describe('secrets', () => {
  const SECRET = 'Pa55w0rd-do-not-log';

  it('keeps the password out of every error message', async () => {
    const messages = [
      await failure({ yaml: `etcd:\n  password: ${SECRET}\n  group: "bad group"\n` }),
      await failure({ yaml: `etcd:\n  password: "${SECRET}\n` }),
      await failure({ yaml: `etcd:\n  password: ${SECRET}: x\n` }),
      await failure({ yaml: 'etcd:\n  password: 123456789\n' }),
      await failure({ env: { SLUICE_PASSWORD: SECRET, SLUICE_CERT: '/c.pem' } }),
      await failure({ flags: { password: SECRET, strategy: 'nope' } }),
      await failure({
        updateConf: [`REBOOT_STRATEGY=x${SECRET}\nLOCKSMITHD_ETCD_PASSWORD="${SECRET}`],
      }),
      await failure({
        updateConf: [`LOCKSMITHD_ETCD_PASSWORD=${SECRET} x\nREBOOT_STRATEGY=${SECRET}`],
      }),
    ];
    for (const message of messages) {
      expect(message).not.toContain(SECRET);
      expect(message).not.toContain('123456789');
    }
    expect(messages[3]).toMatch(/etcd\.password/);
  });

  it('redacts the password and URL credentials in redactConfig', async () => {
    const cfg = await load({
      yaml: `checks:\n  pre:\n    - http: "https://user:${SECRET}@health.example/ok"\n`,
      env: { LOCKSMITHD_ETCD_PASSWORD: SECRET, LOCKSMITHD_ETCD_USERNAME: 'root' },
    });
    expect(cfg.etcd.password).toBe(SECRET);
    const redacted = JSON.stringify(redactConfig(cfg));
    expect(redacted).not.toContain(SECRET);
    expect(redacted).toContain('(redacted)');
    expect(cfg.checks.pre[0]!.name).toBe('http https://health.example/ok');
    // The original is untouched.
    expect(cfg.etcd.password).toBe(SECRET);
  });
});

describe('parseListenAddress', () => {
  it.each([
    ['127.0.0.1:9466', { host: '127.0.0.1', port: 9466 }],
    ['[::1]:9466', { host: '::1', port: 9466 }],
    [':9466', { host: '', port: 9466 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
  ])('reads %s', (text, expected) => {
    expect(parseListenAddress(text)).toEqual({ ok: true, value: expected });
  });

  it.each(['9466', '127.0.0.1:99999', '[nope]:1', '::1:9466', 'a b:1'])('refuses %s', (text) => {
    expect(parseListenAddress(text).ok).toBe(false);
  });
});
