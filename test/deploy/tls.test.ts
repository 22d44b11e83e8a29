/**
 * The bundled sluicectl and sluiced against a real etcd that serves TLS, with certificates made
 * by openssl: CA-only TLS (the client checks the server) and mutual TLS (etcd also demands a
 * client certificate). A wrong CA or a missing client certificate fails with exit 3 and a
 * message that says so. For sluiced, a reboot requested through etcd must reach (fake) logind.
 */
import { join } from 'node:path';
import { type EtcdCluster, FakeLogind, startDbusDaemon, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killAll, runToEnd, start } from '../process.js';
import { agentNode, type Bundle, buildBundle, DEPLOY, run, TempDirs } from './helpers.js';
import { makePki, type Pki } from './pki.js';

const dirs = new TempDirs();
let bundle: Bundle;
let pki: Pki;

beforeAll(async () => {
  [bundle, pki] = await Promise.all([
    dirs.make('bundle').then(buildBundle),
    dirs.make('pki').then(makePki),
  ]);
});
afterEach(() => killAll());
afterAll(() => dirs.removeAll());

function ctl(etcd: EtcdCluster, tls: string[], args: string[]) {
  return runToEnd(bundle.sluicectl, ['--endpoints', etcd.endpoint, ...tls, ...args]);
}

/**
 * Starts the bundled sluiced with `tls` flags, asks for a reboot of its node with sluicectl (same
 * flags), and returns once logind was asked to reboot. Its stdout must show no etcd trouble.
 */
async function rebootThroughAgent(etcd: EtcdCluster, tls: string[]): Promise<void> {
  const node = await agentNode(dirs, 'tls-node');
  const bus = await startDbusDaemon();
  const logind = new FakeLogind(bus.address);
  try {
    await logind.start();
    const etcdFlags = ['--endpoints', etcd.endpoint, ...tls, '--prefix', '/tls-test/'];
    const sluiced = start(bundle.sluiced, [...node.args, '--no-update-engine', ...etcdFlags], {
      SLUICE_DBUS_ADDRESS: bus.address,
    });
    await expect
      .poll(() => sluiced.stdout(), { timeout: 10_000, message: sluiced.stderr() })
      .toContain('"msg":"sluiced starting"');
    const request = await runToEnd(bundle.sluicectl, [
      ...etcdFlags,
      'request-reboot',
      'tls-node',
      '--reason',
      'tls test',
      // The request may come before the agent's registration lands (it logs its start first).
      '--allow-unknown',
    ]);
    expect(request.code, request.stderr).toBe(0);
    await expect
      .poll(() => logind.reboots.length, {
        timeout: 15_000,
        message: `${sluiced.stdout()}\n${sluiced.stderr()}`,
      })
      .toBe(1);
    expect(sluiced.stdout()).not.toMatch(/cannot read this node's record|update source failed/);
    sluiced.child.kill('SIGTERM');
    expect(await sluiced.exited).toBe(0);
  } finally {
    await logind.stop();
    await bus.stop();
  }
}

describe('CA-only TLS: sluice checks the server, etcd asks for no client certificate', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd({ tls: { cert: pki.serverCert, key: pki.serverKey } });
  });
  afterAll(() => etcd?.stop());

  it('sluicectl works with --cacert alone', async () => {
    const set = await ctl(etcd, ['--cacert', pki.ca], ['set-max', '2']);
    expect(set.code, set.stderr).toBe(0);
    const status = await ctl(etcd, ['--cacert', pki.ca], ['status', '-o', 'json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ max: 2 });
  });

  it('the same settings work from the environment (SLUICE_CACERT)', async () => {
    const status = await runToEnd(bundle.sluicectl, ['status'], {
      SLUICE_ENDPOINTS: etcd.endpoint,
      SLUICE_CACERT: pki.ca,
    });
    expect(status.code, status.stderr).toBe(0);
  });

  it('a CA that did not sign the server certificate fails with exit 3, saying why', async () => {
    const status = await ctl(etcd, ['--cacert', pki.otherCa], ['status']);
    expect(status.code).toBe(3);
    expect(status.stderr).toMatch(/^sluicectl: etcd did not answer/m);
    expect(status.stderr).toContain('unable to verify the first certificate');
  });

  it('sluiced reaches etcd: a requested reboot goes through', async () => {
    await rebootThroughAgent(etcd, ['--cacert', pki.ca]);
  });
});

describe('mutual TLS: etcd requires a client certificate signed by its CA', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd({
      tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca },
    });
  });
  afterAll(() => etcd?.stop());

  const mutual = () => ['--cacert', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey];

  it('sluicectl works with --cacert, --cert and --key', async () => {
    const status = await ctl(etcd, mutual(), ['status', '-o', 'json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ group: 'default' });
  });

  it('without a client certificate etcd refuses the connection: exit 3', async () => {
    const status = await ctl(etcd, ['--cacert', pki.ca], ['status']);
    expect(status.code).toBe(3);
    expect(status.stderr).toMatch(/^sluicectl: etcd did not answer/m);
    // The TLS alert etcd sent: "bad certificate" or, in TLS 1.3 terms, "certificate required".
    expect(status.stderr).toMatch(/alert (bad certificate|certificate required)/);
  });

  it('a key without its certificate is a usage error (exit 2)', async () => {
    const status = await ctl(etcd, ['--cacert', pki.ca, '--key', pki.clientKey], ['status']);
    expect(status.code).toBe(2);
    expect(status.stderr).toMatch(/cert/);
  });

  it('sluiced with a client certificate: a requested reboot goes through', async () => {
    await rebootThroughAgent(etcd, mutual());
  });
});

describe('mutual TLS with auth on: the client certificate names the etcd user', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd({
      tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca },
    });
  });
  afterAll(() => etcd?.stop());

  it('setup-rbac.sh works over mutual TLS, and each certificate acts as its CN', async () => {
    const creds = join(await dirs.make('creds'), 'out');
    const setup = await run(
      '/bin/sh',
      [
        join(DEPLOY, 'etcd/setup-rbac.sh'),
        '--endpoints',
        etcd.endpoint,
        '--out',
        creds,
        '--cacert',
        pki.ca,
        '--cert',
        pki.clientCert,
        '--key',
        pki.clientKey,
      ],
      { env: { PATH: process.env.PATH } },
    );
    expect(setup.code, setup.stderr).toBe(0);
    expect(setup.stdout).toContain('auth enabled');

    // No user, no password: CN=sluice-agent is the agent's user, with its role.
    const agentTls = ['--cacert', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey];
    const lock = await ctl(etcd, agentTls, ['lock', '--node', 'n1', '--reason', 'cn']);
    expect(lock.code, lock.stderr).toBe(0);
    const unlock = await ctl(etcd, agentTls, ['unlock', '--node', 'n1']);
    expect(unlock.code, unlock.stderr).toBe(0);

    // CN=sluice-reader may look, not touch.
    const readerTls = ['--cacert', pki.ca, '--cert', pki.readerCert, '--key', pki.readerKey];
    const status = await ctl(etcd, readerTls, ['status']);
    expect(status.code, status.stderr).toBe(0);
    const setMax = await ctl(etcd, readerTls, ['set-max', '3']);
    expect(setMax.code).toBe(3);
    expect(setMax.stderr).toContain('permission denied');
  });
});
