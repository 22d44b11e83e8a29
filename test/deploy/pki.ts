/**
 * A throw-away certificate authority made with the real `openssl`, for TLS tests: a CA, a server
 * certificate for 127.0.0.1, a client certificate, and an unrelated second CA to be wrong with.
 * The same commands work for a lab setup (deploy/etcd/TLS.md shows them).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './helpers.js';

/** Paths of the PEM files `makePki` wrote. */
export interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  /** Client certificate with CN=sluice-agent (etcd's user name when auth is on). */
  clientCert: string;
  clientKey: string;
  /** Client certificate with CN=sluice-reader. */
  readerCert: string;
  readerKey: string;
  /** A CA that signed none of the above. */
  otherCa: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const result = await run('openssl', args, { cwd });
  if (result.code !== 0) {
    throw new Error(`openssl ${args.join(' ')} failed:\n${result.stderr}`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

async function makeCa(dir: string, name: string): Promise<void> {
  // -subj keeps openssl from prompting; basicConstraints makes it a CA.
  await openssl(
    [
      'req',
      '-x509',
      ...EC,
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

async function issue(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
): Promise<void> {
  await writeFile(join(dir, `${name}.ext`), extensions);
  await openssl(
    ['req', ...EC, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', subject],
    dir,
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca-key.pem',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

/** Writes a CA, a server and a client certificate (and another CA) into `dir`. */
export async function makePki(dir: string): Promise<Pki> {
  await makeCa(dir, 'ca');
  await makeCa(dir, 'other-ca');
  await issue(
    dir,
    'server',
    '/CN=etcd-test',
    // clientAuth too: etcd dials itself with its server certificate for its HTTP gateway.
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n',
  );
  await issue(dir, 'client', '/CN=sluice-agent', 'extendedKeyUsage=clientAuth\n');
  await issue(dir, 'reader', '/CN=sluice-reader', 'extendedKeyUsage=clientAuth\n');
  const at = (file: string) => join(dir, file);
  return {
    ca: at('ca.pem'),
    serverCert: at('server.pem'),
    serverKey: at('server-key.pem'),
    clientCert: at('client.pem'),
    clientKey: at('client-key.pem'),
    readerCert: at('reader.pem'),
    readerKey: at('reader-key.pem'),
    otherCa: at('other-ca.pem'),
  };
}
