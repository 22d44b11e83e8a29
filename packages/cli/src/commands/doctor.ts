/**
 * `sluicectl doctor`: checks what a node or an operator needs before sluice can work: the etcd
 * settings, etcd answering, its version, authentication, read and write access to the prefix,
 * the local clock against etcd's, and on a node logind and update_engine on D-Bus.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { hostname } from 'node:os';
import { groupsPrefix, isSluiceError, normalizePrefix, type SluiceError } from '@sluice/core';
import { type EtcdSettings, etcdCall } from '@sluice/etcd';
import { type Context, type EtcdClient, EXIT } from '../context.js';
import { human } from '../format.js';

/** The result of one check. */
export interface Check {
  name: string;
  result: 'pass' | 'fail' | 'skip';
  detail: string;
  /** What to do about a failure or a skip. */
  hint?: string;
}

/** How far the local clock may be from etcd's, beyond the measurement's uncertainty. */
const MAX_SKEW_MS = 2000;

/** How long each D-Bus call may take. */
const DBUS_TIMEOUT_MS = 2000;

const GRANT_HINT = (prefix: string) =>
  `grant the role read and write on the prefix: etcdctl role grant-permission ROLE --prefix=true readwrite ${prefix}`;

function kindOf(error: unknown): SluiceError['kind'] | null {
  return isSluiceError(error) ? error.kind : null;
}

function reasonOf(error: unknown): string | undefined {
  return isSluiceError(error) ? error.reason : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs the checks, prints one line each, and exits 0 if all pass, 3 without etcd, else 1. */
export async function doctor(
  ctx: Context,
  opts: { dbusAddress: string; dbus: boolean },
): Promise<number> {
  const checks: Check[] = [];
  const settings = await ctx.settings();
  const tls = settings.cacert || settings.cert ? ', TLS' : '';
  checks.push({
    name: 'config',
    result: 'pass',
    detail: `endpoints ${settings.endpoints.join(',')}; prefix ${settings.prefix}; group ${settings.group}${settings.username ? `; user ${settings.username}` : ''}${tls}`,
  });

  const client = await ctx.client();
  const etcd = await checkEtcd(client, settings);
  checks.push(...etcd.checks);
  if (etcd.reachable && etcd.authenticated) {
    checks.push(await checkAccess(client, settings));
  } else {
    const detail = etcd.reachable ? 'not authenticated' : 'etcd unreachable';
    checks.push({ name: 'permissions', result: 'skip', detail });
  }
  checks.push(await checkClock(settings));

  if (!opts.dbus) {
    checks.push({ name: 'logind', result: 'skip', detail: 'skipped with --no-dbus' });
    checks.push({ name: 'update_engine', result: 'skip', detail: 'skipped with --no-dbus' });
  } else {
    checks.push(...(await checkDbus(opts.dbusAddress, ctx.io.env)));
  }

  const ok = checks.every((c) => c.result !== 'fail');
  if (ctx.json) {
    ctx.outJson({ ok, checks });
  } else {
    const width = Math.max(...checks.map((c) => c.name.length));
    for (const c of checks) {
      ctx.out(`${c.result.padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}`);
      if (c.hint) ctx.out(`${' '.repeat(width + 8)}-> ${c.hint}`);
    }
  }
  if (!etcd.reachable || !etcd.authenticated) return EXIT.etcd;
  return ok ? EXIT.ok : EXIT.refused;
}

/**
 * Without a user, whether etcd lets us in: a status request needs no auth, so read one key under
 * the prefix. etcd refuses that without a user when its auth is on. With a client certificate, its
 * CN is the user, and a refusal for lack of permission is for the permissions check to report.
 */
async function checkAnonymous(client: EtcdClient, settings: EtcdSettings): Promise<Check> {
  const root = groupsPrefix(normalizePrefix(settings.prefix));
  try {
    await etcdCall(`a read of ${root}`, () => client.getAll().prefix(root).limit(1).keys());
  } catch (error) {
    // What etcd 3.4+ answers a request without a user when its auth is on.
    if (kindOf(error) === 'etcd-denied' && reasonOf(error) === 'no-user') {
      return {
        name: 'auth',
        result: 'fail',
        detail: 'etcd has authentication enabled, and no user was given',
        hint: 'pass --user NAME and --password-file FILE (or set SLUICE_USERNAME and SLUICE_PASSWORD_FILE)',
      };
    }
    if (kindOf(error) !== 'etcd-denied') throw error;
  }
  return settings.cert
    ? {
        name: 'auth',
        result: 'pass',
        detail: 'no user given: etcd accepted the client certificate (its CN is the user)',
      }
    : {
        name: 'auth',
        result: 'pass',
        detail: 'no user given, and etcd answered a read without one: etcd auth is off',
      };
}

/** etcd answering, its version, and authentication. */
async function checkEtcd(
  client: EtcdClient,
  settings: EtcdSettings,
): Promise<{ checks: Check[]; reachable: boolean; authenticated: boolean }> {
  const started = Date.now();
  try {
    const status = await etcdCall('a status request', () => client.maintenance.status());
    const answered = Date.now() - started;
    const [major = 0, minor = 0] = status.version.split('.').map(Number);
    const supported = major === 3 && minor >= 4;
    const auth: Check = settings.username
      ? { name: 'auth', result: 'pass', detail: `authenticated as ${settings.username}` }
      : await checkAnonymous(client, settings);
    return {
      reachable: true,
      authenticated: auth.result !== 'fail',
      checks: [
        {
          name: 'etcd',
          result: 'pass',
          detail: `${settings.endpoints.join(',')} answered in ${answered} ms`,
        },
        {
          name: 'etcd version',
          result: supported ? 'pass' : 'fail',
          detail: `etcd ${status.version}`,
          ...(supported ? {} : { hint: 'sluice needs etcd 3.4 or later (v3 API with leases)' }),
        },
        auth,
      ],
    };
  } catch (error) {
    if (reasonOf(error) === 'auth-disabled') {
      return {
        reachable: true,
        authenticated: false,
        checks: [
          { name: 'etcd', result: 'pass', detail: `${settings.endpoints.join(',')} answered` },
          { name: 'etcd version', result: 'skip', detail: 'not authenticated' },
          {
            name: 'auth',
            result: 'fail',
            detail: 'a user was given, but etcd has authentication disabled',
            hint: 'drop --user and the password (and SLUICE_USERNAME/SLUICE_PASSWORD*), or enable etcd auth',
          },
        ],
      };
    }
    if (kindOf(error) === 'etcd-denied') {
      return {
        reachable: true,
        authenticated: false,
        checks: [
          { name: 'etcd', result: 'pass', detail: `${settings.endpoints.join(',')} answered` },
          { name: 'etcd version', result: 'skip', detail: 'not authenticated' },
          {
            name: 'auth',
            result: 'fail',
            detail: messageOf(error),
            hint: settings.username
              ? 'check the user name and password (--user, --password-file)'
              : 'etcd has auth enabled: pass --user and --password-file',
          },
        ],
      };
    }
    return {
      reachable: false,
      authenticated: false,
      checks: [
        {
          name: 'etcd',
          result: 'fail',
          detail: messageOf(error),
          hint: 'check --endpoints (or SLUICE_ENDPOINTS), the network, and that the TLS flags match the server',
        },
        { name: 'etcd version', result: 'skip', detail: 'etcd unreachable' },
        { name: 'auth', result: 'skip', detail: 'etcd unreachable' },
      ],
    };
  }
}

/** Reads the prefix, then writes, reads back and deletes a probe key under `<prefix>doctor/`. */
async function checkAccess(client: EtcdClient, settings: EtcdSettings): Promise<Check> {
  const prefix = normalizePrefix(settings.prefix);
  const host = hostname().replace(/[^A-Za-z0-9._:@-]/g, '_') || 'host';
  const probe = `${prefix}doctor/${host}`;
  const step = { now: 'read' };
  try {
    await etcdCall(`a read of ${groupsPrefix(prefix)}`, () =>
      client.getAll().prefix(groupsPrefix(prefix)).count(),
    );
    step.now = 'write';
    const value = JSON.stringify({ at: new Date().toISOString() });
    await etcdCall(`a write of ${probe}`, () => client.put(probe).value(value).exec());
    const back = await etcdCall(`a read of ${probe}`, () => client.get(probe).string());
    if (back !== value) {
      return { name: 'permissions', result: 'fail', detail: `${probe} read back differently` };
    }
    step.now = 'delete';
    await etcdCall(`a delete of ${probe}`, () => client.delete().key(probe).exec());
    return {
      name: 'permissions',
      result: 'pass',
      detail: `read, write and delete under ${prefix}`,
    };
  } catch (error) {
    return {
      name: 'permissions',
      result: 'fail',
      detail: `cannot ${step.now} under ${prefix}: ${messageOf(error)}`,
      hint: GRANT_HINT(prefix),
    };
  }
}

/**
 * Compares the local clock with etcd's. etcd has no time API, so this reads the HTTP `Date`
 * header of the endpoint's `/version` (whole seconds), and allows for that and the round trip.
 */
async function checkClock(settings: EtcdSettings): Promise<Check> {
  const tlsOn = Boolean(settings.cacert || settings.cert);
  const errors: string[] = [];
  for (const raw of settings.endpoints) {
    const base = /^https?:\/\//.test(raw) ? raw : `${tlsOn ? 'https' : 'http'}://${raw}`;
    try {
      const { date, sent, received } = await serverDate(
        `${base.replace(/\/$/, '')}/version`,
        settings,
      );
      const local = (sent + received) / 2;
      // The header is truncated to the second: the server's time lies in [date, date + 1 s).
      const skew = local - (date + 500);
      const uncertainty = 500 + (received - sent) / 2;
      const ahead = skew >= 0 ? 'ahead of' : 'behind';
      const size =
        Math.abs(skew) < 10_000 ? `${Math.round(Math.abs(skew))} ms` : human(Math.abs(skew));
      const detail = `local clock ${size} ${ahead} etcd's (±${Math.round(uncertainty)} ms, from ${base})`;
      if (Math.abs(skew) - uncertainty > MAX_SKEW_MS) {
        return {
          name: 'clock',
          result: 'fail',
          detail,
          hint: 'sync the clock (timedatectl, chronyc tracking): windows are judged by the local clock',
        };
      }
      return { name: 'clock', result: 'pass', detail };
    } catch (error) {
      errors.push(`${base}: ${messageOf(error)}`);
    }
  }
  return {
    name: 'clock',
    result: 'skip',
    detail: `could not read the time from etcd over HTTP (${errors.join('; ')})`,
    hint: 'etcd has no time API; compare the clocks by hand if in doubt (date -u)',
  };
}

/** GETs `url` and returns its `Date` header and when the request was sent and answered. */
async function serverDate(
  url: string,
  settings: EtcdSettings,
): Promise<{ date: number; sent: number; received: number }> {
  const https = url.startsWith('https:');
  const tls = https
    ? {
        ...(settings.cacert ? { ca: await readFile(settings.cacert) } : {}),
        ...(settings.cert ? { cert: await readFile(settings.cert) } : {}),
        ...(settings.key ? { key: await readFile(settings.key) } : {}),
      }
    : {};
  return new Promise((resolve, reject) => {
    const sent = Date.now();
    const req = (https ? httpsRequest : httpRequest)(url, { ...tls, timeout: 3000 }, (res) => {
      const received = Date.now();
      res.resume();
      const date = Date.parse(res.headers.date ?? '');
      if (Number.isNaN(date)) reject(new Error('no Date header in the answer'));
      else resolve({ date, sent, received });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 3 s')));
    req.on('error', reject);
    req.end();
  });
}

/** The socket of the system bus, if this machine has one. */
function systemBusSocket(env: NodeJS.ProcessEnv): string {
  const address = env.DBUS_SYSTEM_BUS_ADDRESS;
  const path = address?.match(/unix:path=([^,;]+)/)?.[1];
  return path ?? '/var/run/dbus/system_bus_socket';
}

/** logind and update_engine answering on the bus. */
async function checkDbus(address: string, env: NodeJS.ProcessEnv): Promise<Check[]> {
  if (address === 'system' && !existsSync(systemBusSocket(env))) {
    const detail = `no system bus here (${systemBusSocket(env)} is missing)`;
    const hint = 'run doctor on a node, or pass --dbus-address; --no-dbus skips these checks';
    return [
      { name: 'logind', result: 'skip', detail, hint },
      { name: 'update_engine', result: 'skip', detail, hint },
    ];
  }
  const { LogindClient, UpdateEngineClient } = await import('@sluice/dbus');
  const where = address === 'system' ? 'the system bus' : address;
  const checks: Check[] = [];
  const logind = await new LogindClient({ address, callTimeoutMs: DBUS_TIMEOUT_MS }).available();
  checks.push(
    logind.ok
      ? { name: 'logind', result: 'pass', detail: `org.freedesktop.login1 answers on ${where}` }
      : {
          name: 'logind',
          result: 'fail',
          detail: logind.error.message,
          hint: 'the agent reboots through logind; check systemd-logind is running',
        },
  );
  const engine = new UpdateEngineClient({ address, callTimeoutMs: DBUS_TIMEOUT_MS });
  try {
    await engine.start();
    const status = engine.status;
    checks.push(
      engine.serviceUp && status
        ? {
            name: 'update_engine',
            result: 'pass',
            detail: `com.coreos.update1 answers: ${status.currentOperation}${status.newVersion ? `, version ${status.newVersion}` : ''}`,
          }
        : {
            name: 'update_engine',
            result: 'fail',
            detail: `com.coreos.update1 is not on ${where}`,
            hint: 'needed only when the agent watches update_engine (Flatcar); other nodes use the sentinel file or a command',
          },
    );
  } catch (error) {
    checks.push({
      name: 'update_engine',
      result: 'fail',
      detail: messageOf(error),
      hint: 'needed only when the agent watches update_engine (Flatcar); other nodes use the sentinel file or a command',
    });
  } finally {
    await engine.close();
  }
  return checks;
}
