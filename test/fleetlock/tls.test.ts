/**
 * sluice-fleetlock over TLS on both sides: etcd with TLS, reached through the same settings as
 * sluicectl (here from SLUICE_* variables, the CA as a file), and the server's own listener on
 * HTTPS with --tls-cert and --tls-key. Certificates come from a throw-away CA made with openssl.
 */

import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { GroupKeys } from '@sluice/core';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TempDirs } from '../deploy/helpers.js';
import { makePki, type Pki } from '../deploy/pki.js';
import { killAll, runToEnd } from '../process.js';
import { FLEETLOCK, send, startServer } from './support.js';

const dirs = new TempDirs();
let pki: Pki;
let etcd: EtcdCluster;
const prefix = `/fltls-${randomUUID().slice(0, 8)}/`;

beforeAll(async () => {
  pki = await makePki(await dirs.make('pki'));
  etcd = await startEtcd({ tls: { cert: pki.serverCert, key: pki.serverKey } });
});
afterAll(async () => {
  await killAll();
  await etcd?.stop();
  await dirs.removeAll();
});

it('serves HTTPS and reaches a TLS etcd from the SLUICE_* variables', async () => {
  const ca = await readFile(pki.ca);
  const keys = new GroupKeys(prefix, 'tls');
  const admin = new Etcd3({ hosts: etcd.endpoints, credentials: { rootCertificate: ca } });
  try {
    await admin.put(keys.max).value('1');
    const server = await startServer(
      [],
      prefix,
      ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey],
      { env: { SLUICE_ENDPOINTS: etcd.endpoint, SLUICE_CACERT: pki.ca }, ca },
    );
    const body = { client_params: { id: 'secure1', group: keys.group } };
    const answer = await send(server.url, { body, ca });
    expect(answer.status, answer.body).toBe(200);
    expect(await admin.get(keys.holding('secure1')).exists()).toBe(true);
    // A client that does not trust the CA is refused by TLS itself.
    await expect(send(server.url, { body, ca: await readFile(pki.otherCa) })).rejects.toThrow();
  } finally {
    admin.close();
  }
});

it('refuses a --tls-cert without --tls-key, and an unreadable etcd CA, as configuration errors', async () => {
  const half = await runToEnd(FLEETLOCK, [
    '--tls-cert',
    pki.serverCert,
    '--endpoints',
    etcd.endpoint,
  ]);
  expect(half.code).toBe(2);
  expect(half.stderr).toContain('--tls-cert and --tls-key go together');
  const missing = await runToEnd(FLEETLOCK, [], {
    SLUICE_ENDPOINTS: etcd.endpoint,
    SLUICE_CACERT: '/nonexistent/ca.pem',
  });
  expect(missing.code).toBe(2);
  expect(missing.stderr).toContain('SLUICE_CACERT');
});
