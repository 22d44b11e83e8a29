/**
 * The clock guard. Reboot windows are evaluated on the node's own clock, so a node whose clock is
 * far off would reboot outside its window. Before an admission and again right before the reboot
 * call, the agent compares its clock with etcd's, read from the `Date` header of etcd's
 * `/version` answer and corrected for the round trip, and fails closed beyond a bound.
 */
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { EtcdConnectionOptions } from './client.js';

/** One reading of the local clock against etcd's. */
export interface ClockReading {
  /** Local clock minus etcd's, in ms: positive when this node is ahead. */
  offsetMs: number;
  /** How far off the reading itself may be: half the round trip, plus the Date header's 1 s. */
  uncertaintyMs: number;
  endpoint: string;
}

/** The `Date` header of `GET <endpoint>/version`, with the local time before and after. */
function dateOf(
  endpoint: string,
  tls: { ca?: Buffer; cert?: Buffer; key?: Buffer },
  now: () => number,
  timeoutMs: number,
): Promise<{ date: number; t0: number; t1: number }> {
  const url = new URL('/version', endpoint);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const t0 = now();
    const req = request(url, { method: 'GET', timeout: timeoutMs, ...tls }, (res) => {
      const t1 = now();
      res.resume();
      const header = res.headers.date;
      const date = header ? Date.parse(header) : Number.NaN;
      if (Number.isNaN(date)) reject(new Error(`${url.origin} sent no Date header`));
      else resolve({ date, t0, t1 });
    });
    req.on('timeout', () => req.destroy(new Error(`${url.origin} did not answer in time`)));
    req.on('error', reject);
    req.end();
  });
}

/** Compares the local clock (`now`) with etcd's, trying each endpoint until one answers. */
export async function readEtcdClock(
  conn: Pick<EtcdConnectionOptions, 'endpoints' | 'caFile' | 'certFile' | 'keyFile'>,
  now: () => number = Date.now,
  timeoutMs = 3000,
): Promise<ClockReading> {
  const tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  if (conn.caFile) tls.ca = await readFile(conn.caFile);
  if (conn.certFile) tls.cert = await readFile(conn.certFile);
  if (conn.keyFile) tls.key = await readFile(conn.keyFile);
  const tlsOn = Boolean(conn.caFile || conn.certFile || conn.keyFile);
  let last: unknown = null;
  for (const raw of conn.endpoints) {
    const endpoint = /^https?:\/\//.test(raw) ? raw : `${tlsOn ? 'https' : 'http'}://${raw}`;
    try {
      const { date, t0, t1 } = await dateOf(endpoint, tls, now, timeoutMs);
      // The header has whole seconds: etcd's clock was somewhere in [date, date + 1000).
      const etcdMid = date + 500;
      const localMid = (t0 + t1) / 2;
      return { offsetMs: localMid - etcdMid, uncertaintyMs: (t1 - t0) / 2 + 500, endpoint };
    } catch (error) {
      last = error;
    }
  }
  throw last instanceof Error ? last : new Error('no etcd endpoint answered');
}

/** The outcome of `checkClock()`: why the clock is not fit to act on (null if it is). */
export interface ClockCheck {
  problem: string | null;
  /** The reading, when etcd answered. */
  reading: ClockReading | null;
}

/**
 * Says whether the local clock is within `maxSkewMs` of etcd's. An etcd that cannot be asked is a
 * problem too (fail closed): without it nothing can be admitted anyway.
 */
export async function checkClock(
  conn: Pick<EtcdConnectionOptions, 'endpoints' | 'caFile' | 'certFile' | 'keyFile'>,
  maxSkewMs: number,
  now: () => number = Date.now,
): Promise<ClockCheck> {
  let reading: ClockReading;
  try {
    reading = await readEtcdClock(conn, now);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return { problem: `cannot compare this node's clock with etcd's: ${why}`, reading: null };
  }
  const skew = Math.abs(reading.offsetMs) - reading.uncertaintyMs;
  if (skew <= maxSkewMs) return { problem: null, reading };
  const seconds = Math.round(Math.abs(reading.offsetMs) / 1000);
  const way = reading.offsetMs > 0 ? 'ahead of' : 'behind';
  return {
    problem: `this node's clock is ${seconds} s ${way} etcd's (${reading.endpoint}), more than the ${Math.round(maxSkewMs / 1000)} s allowed (clock.maxSkew): no admission and no reboot until it is fixed (check NTP)`,
    reading,
  };
}
