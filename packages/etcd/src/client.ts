/**
 * Connecting to etcd: endpoints, TLS (CA-only or mutual), user and password, and the fault
 * policies every call runs under. Secrets are read from files or options and never logged.
 */
import { readFile } from 'node:fs/promises';
import { SluiceError } from '@sluice/core';
import {
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  type IDefaultPolicyContext,
  type IPolicy,
  retry,
} from 'cockatiel';
import { Etcd3, type IOptions, isRecoverableError } from 'etcd3';
import { noteEtcdUser } from './errors.js';

/** How to reach etcd. The same fields back the agent's config and the CLI's flags. */
export interface EtcdConnectionOptions {
  /** Client URLs, e.g. `http://127.0.0.1:2379` or `https://etcd-1:2379`. */
  endpoints: string[];
  /** CA bundle that signed the servers' certificates. Enough on its own for CA-only TLS. */
  caFile?: string | undefined;
  /** Client certificate and key, for mutual TLS. Both or neither. */
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /** etcd user name and password, for etcd's own auth. */
  username?: string | undefined;
  password?: string | undefined;
  /** Deadline for one unary call, in ms. Default 5000. */
  callTimeoutMs?: number | undefined;
  /** Attempts for a call that failed in a recoverable way (connection lost, leader change). Default 3. */
  retryAttempts?: number | undefined;
}

async function readPem(path: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new SluiceError('invalid-config', `cannot read ${flag} file ${path} (${reason})`, path, {
      cause,
    });
  }
}

/**
 * A cockatiel policy that starts afresh whenever the wall clock steps. cockatiel's circuit
 * breaker times its open state with `Date.now()`: after the clock steps back (NTP putting a
 * node's clock right), an open breaker would refuse every call to its endpoint until the clock
 * has caught up again, hours perhaps. A step is a change of more than a second between the wall
 * clock and the monotonic one since the last call; then the breaker is made again, closed.
 */
class ClockStepSafe implements IPolicy<IDefaultPolicyContext> {
  declare readonly _altReturn: never;
  #policy: IPolicy<IDefaultPolicyContext>;
  #offset = Date.now() - performance.now();

  constructor(private readonly make: () => IPolicy<IDefaultPolicyContext>) {
    this.#policy = make();
  }

  get onSuccess(): IPolicy['onSuccess'] {
    return this.#policy.onSuccess;
  }

  get onFailure(): IPolicy['onFailure'] {
    return this.#policy.onFailure;
  }

  execute<T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    signal?: AbortSignal,
  ): Promise<T> {
    const offset = Date.now() - performance.now();
    if (Math.abs(offset - this.#offset) > 1000) this.#policy = this.make();
    this.#offset = offset;
    return this.#policy.execute(fn, signal);
  }
}

/** Builds the etcd3 options for a connection, reading certificate files. */
export async function etcdClientOptions(opts: EtcdConnectionOptions): Promise<IOptions> {
  if (opts.endpoints.length === 0) {
    throw new SluiceError('invalid-config', 'no etcd endpoints given', 'endpoints');
  }
  const tls = Boolean(opts.caFile || opts.certFile || opts.keyFile);
  if (Boolean(opts.certFile) !== Boolean(opts.keyFile)) {
    throw new SluiceError(
      'invalid-config',
      'mutual TLS needs both a client certificate and its key (--cert and --key)',
      opts.certFile ? 'key' : 'cert',
    );
  }
  const hosts = opts.endpoints.map((e) => normalizeEndpoint(e, tls));
  const callTimeoutMs = opts.callTimeoutMs ?? 5000;
  const options: IOptions = {
    hosts,
    dialTimeout: callTimeoutMs,
    // Unary calls get a deadline; watch and keep-alive streams must live on.
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + callTimeoutMs },
    faultHandling: {
      host: () =>
        new ClockStepSafe(() =>
          circuitBreaker(handleWhen(isRecoverableError), {
            halfOpenAfter: 2000,
            breaker: new ConsecutiveBreaker(3),
          }),
        ),
      global: retry(handleWhen(isRecoverableError), {
        maxAttempts: opts.retryAttempts ?? 3,
        backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }),
      }),
    },
  };
  if (tls) {
    const rootCertificate = opts.caFile
      ? await readPem(opts.caFile, '--cacert')
      : // Mutual TLS with the system's trust store: etcd3 wants a root, so use Node's bundle.
        Buffer.from((await import('node:tls')).rootCertificates.join('\n'));
    options.credentials = {
      rootCertificate,
      ...(opts.certFile ? { certChain: await readPem(opts.certFile, '--cert') } : {}),
      ...(opts.keyFile ? { privateKey: await readPem(opts.keyFile, '--key') } : {}),
    };
  }
  if (opts.username) {
    options.auth = { username: opts.username, password: opts.password ?? '' };
  }
  return options;
}

function normalizeEndpoint(endpoint: string, tls: boolean): string {
  const e = endpoint.trim();
  if (/^https?:\/\//.test(e)) return e;
  return `${tls ? 'https' : 'http'}://${e}`;
}

/** An etcd client, for packages that should not name the etcd3 library themselves. */
export type EtcdClient = Etcd3;

/** Opens a client. Close it with `client.close()`. */
export async function connectEtcd(opts: EtcdConnectionOptions): Promise<Etcd3> {
  const client = new Etcd3(await etcdClientOptions(opts));
  noteEtcdUser(opts.username || null);
  return client;
}
