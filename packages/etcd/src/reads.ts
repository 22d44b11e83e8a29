/**
 * Reads that stay within gRPC's 4 MiB message limit however big a group grows: a prefix read in
 * pages at one fixed revision, and the few small ranges an admission decision needs.
 */
import { isSluiceError, type RawKV } from '@sluice/core';
import type { Etcd3, IKeyValue, IRangeRequest, IRangeResponse } from 'etcd3';
import { etcdCall } from './errors.js';

/** Converts etcd3's key-value to the core's RawKV. */
export function toRawKV(kv: IKeyValue): RawKV {
  return {
    key: kv.key.toString(),
    value: kv.value?.toString() ?? '',
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease ?? '0'),
  };
}

/** The end of the key range holding every key that starts with `prefix`. */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Keys per page of a prefix read; pages shrink when values are big. */
const PAGE_KEYS = 500;

/** True for gRPC's "message larger than max" (code 8, RESOURCE_EXHAUSTED). */
function tooBig(error: unknown): boolean {
  return isSluiceError(error) && error.reason === 'too-large';
}

/** True for etcd's answer to a read at a revision that was compacted away. */
function compacted(error: unknown): boolean {
  return isSluiceError(error) && error.reason === 'compacted';
}

/**
 * Reads every key under `prefix` at one revision (`options.revision`, or the current one), in pages, so no response comes near gRPC's
 * message limit: a page that is still too big is read again with half as many keys, down to one.
 * If etcd compacts past the revision between pages, the read starts over at a new one.
 */
export async function readPrefix(
  client: Etcd3,
  prefix: string,
  what = `a read of ${prefix}`,
  options: { keysOnly?: boolean; revision?: number } = {},
): Promise<{ kvs: RawKV[]; revision: number }> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await readPages(client, prefix, what, options.keysOnly ?? false, options.revision);
    } catch (error) {
      // At a revision of our own choosing, start over at a newer one; at the caller's, give up.
      if (!compacted(error) || options.revision !== undefined || attempt >= 3) throw error;
    }
  }
}

async function readPages(
  client: Etcd3,
  prefix: string,
  what: string,
  keysOnly: boolean,
  atRevision = 0,
): Promise<{ kvs: RawKV[]; revision: number }> {
  const end = prefixEnd(prefix);
  const kvs: RawKV[] = [];
  let from = Buffer.from(prefix);
  let revision = atRevision;
  let limit = PAGE_KEYS;
  for (;;) {
    const req: IRangeRequest = { key: from, range_end: end, limit, keys_only: keysOnly };
    if (revision > 0) req.revision = revision;
    let res: IRangeResponse;
    try {
      res = await etcdCall(what, () => client.kv.range(req));
    } catch (error) {
      if (tooBig(error) && limit > 1) {
        limit = Math.max(1, Math.floor(limit / 2));
        continue;
      }
      throw error;
    }
    if (revision === 0) revision = Number(res.header.revision);
    for (const kv of res.kvs) kvs.push(toRawKV(kv));
    const last = res.kvs.at(-1);
    if (!res.more || !last) return { kvs, revision };
    // The next page starts right after the last key read.
    from = Buffer.concat([last.key, Buffer.from([0])]);
    limit = Math.min(PAGE_KEYS, limit * 2);
  }
}
