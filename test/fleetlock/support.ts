/**
 * Shared pieces of the FleetLock tests: the built `sluice-fleetlock` run as a process against a
 * real etcd, and a client that speaks the protocol as Zincati does (POST, the protocol header,
 * no Content-Type). `npx turbo run build` must have run first.
 */
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { fileURLToPath } from 'node:url';
import { freePort } from '@sluice/testkit';
import { type Proc, start } from '../process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const FLEETLOCK = `${root}packages/fleetlock/dist/main.js`;

/** A running server and where it listens. */
export interface FleetLockServer {
  proc: Proc;
  url: string;
  /** The CA a client must trust, for a server that serves HTTPS. */
  ca?: Buffer;
}

/** Starts sluice-fleetlock on a free loopback port and waits until /healthz answers. */
export async function startServer(
  endpoints: string[],
  prefix: string,
  extra: string[] = [],
  opts: { env?: NodeJS.ProcessEnv; ca?: Buffer } = {},
): Promise<FleetLockServer> {
  const port = await freePort();
  const args = ['--listen', `127.0.0.1:${port}`, '--prefix', prefix, ...extra];
  // The endpoints may come from the environment instead (SLUICE_ENDPOINTS).
  if (endpoints.length > 0) args.push('--endpoints', endpoints.join(','));
  const proc = start(FLEETLOCK, args, opts.env);
  const url = `${opts.ca ? 'https' : 'http'}://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const up = await healthz(url, opts.ca);
    if (up) break;
    const code = await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 50, null))]);
    if (code !== null) {
      throw new Error(`sluice-fleetlock exited (${code}): ${proc.stderr()}${proc.stdout()}`);
    }
    if (Date.now() > deadline) throw new Error(`sluice-fleetlock did not start: ${proc.stderr()}`);
  }
  return { proc, url, ...(opts.ca ? { ca: opts.ca } : {}) };
}

/** True when GET /healthz answers 200 (over HTTPS trusting only `ca`, when given). */
function healthz(url: string, ca?: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const req = (ca ? httpsRequest : request)(`${url}/healthz`, ca ? { ca } : {}, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** An answer: the status, the raw body, and the body as JSON when it is JSON. */
export interface Answer {
  status: number;
  body: string;
  json: { kind?: string; value?: string } | null;
  headers: Record<string, string | string[] | undefined>;
}

/** Sends one request; `body` goes as it is (a string) or as JSON. */
export function send(
  url: string,
  opts: {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string | object;
    /** Trust only this CA: the server serves HTTPS. */
    ca?: Buffer;
  } = {},
): Promise<Answer> {
  const body =
    opts.body === undefined
      ? ''
      : typeof opts.body === 'string'
        ? opts.body
        : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const req = (opts.ca ? httpsRequest : request)(
      `${url}${opts.path ?? '/v1/pre-reboot'}`,
      {
        method: opts.method ?? 'POST',
        ...(opts.ca ? { ca: opts.ca } : {}),
        // A length for every method: Node sends a GET's body unframed otherwise.
        headers: {
          'fleet-lock-protocol': 'true',
          'content-length': String(Buffer.byteLength(body)),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Answer['json'] = null;
          try {
            json = JSON.parse(text);
          } catch {
            json = null;
          }
          resolve({ status: res.statusCode ?? 0, body: text, json, headers: res.headers });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A Zincati-style pre-reboot or steady-state for `id` in `group`. */
export function call(
  url: string,
  endpoint: 'pre-reboot' | 'steady-state',
  id: string,
  group: string,
): Promise<Answer> {
  return send(url, {
    path: `/v1/${endpoint}`,
    body: { client_params: { id, group } },
  });
}

/** Sleeps for `ms`. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
