/**
 * Migration from a live locksmith: locksmith's reboot semaphore is read, its holders are recorded
 * as sluice slots marked `migrated`, sluice's max is set to locksmith's, and locksmith's
 * semaphore is set to admit nobody more (its max to 0, holders kept), so that while the fleet
 * switches node by node, the nodes still on locksmithd stop taking slots and the nodes already on
 * sluiced count the locksmith holders against max: never more than max down at once.
 *
 * locksmith keeps its semaphore as one JSON value (`{"semaphore":1,"max":2,"holders":["id"]}`,
 * `semaphore` being the free count) at `coreos.com/updateengine/rebootlock/semaphore`, or
 * `.../groups/<group, URL-escaped>/semaphore` for a group. Classic locksmith uses etcd's v2 keys
 * API (served by etcd up to 3.5 with `--enable-v2`); Flatcar's v3 port keeps the same key in v3.
 * Both update it with a compare-and-swap on its index (v2) or version (v3), and so does this.
 *
 * The sluice side is one txn, guarded so that no admission slips past it: it writes the markers,
 * and `max` (always, even to the value it had), whose mod revision every admission txn is guarded
 * on, so an admission decided on a read from before the migration fails; and it requires that no
 * holding marker was created or changed since its own read, so an admission that committed in
 * between fails the migration instead (it then reads again). Migrated slots stand ahead of every
 * waiter (see `rankIn` in `@sluice/core`). With locksmith's v3 semaphore the semaphore's update is
 * part of the same txn; with v2 it is a compare-and-swap first, since the v2 store is separate:
 * freezing locksmith first is the safe order (until the sluice txn lands, nothing more reboots).
 *
 * Why one file: reading locksmith's v2 or v3 state, mapping it and the one txn that writes it are
 * one migration, whose safe order is stated above.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import {
  type ActionRecord,
  type GroupKeys,
  type HoldingMarker,
  parseMax,
  SluiceError,
} from '@sluice/core';
import type { Etcd3, ICompare, IRequestOp } from 'etcd3';
import { z } from 'zod';
import type { EtcdConnectionOptions } from './client.js';
import { etcdCall } from './errors.js';
import { pruneHistory } from './history.js';
import { prefixEnd, toRawKV } from './reads.js';

/** History records kept per group, as for sluicectl's other actions. */
const HISTORY_LIMIT = 500;

/** locksmith's key prefix. */
const LOCKSMITH_PREFIX = 'coreos.com/updateengine/rebootlock';

/**
 * The key of locksmith's semaphore for a group: the default semaphore for sluice's `default`
 * group (locksmith's group ""), else `groups/<group, URL-escaped as Go's QueryEscape>/semaphore`.
 */
export function locksmithSemaphoreKey(group: string): string {
  if (group === 'default') return `${LOCKSMITH_PREFIX}/semaphore`;
  const escaped = encodeURIComponent(group).replace(/%20/g, '+');
  return `${LOCKSMITH_PREFIX}/groups/${escaped}/semaphore`;
}

/** locksmith's semaphore value, as locksmith writes it. */
export const LocksmithSemaphoreSchema = z.looseObject({
  semaphore: z.number().int(),
  max: z.number().int(),
  holders: z.array(z.string()).nullable(),
});

/** A parsed locksmith semaphore. */
export interface LocksmithSemaphore {
  semaphore: number;
  max: number;
  holders: string[];
}

/** Where locksmith's semaphore was found and the version a compare-and-swap must match. */
export interface LocksmithRead {
  api: 'v2' | 'v3';
  key: string;
  semaphore: LocksmithSemaphore;
  /** v2: the node's modifiedIndex; v3: the key's version. */
  index: number;
  /** The raw value, for messages. */
  raw: string;
}

function parseSemaphore(raw: string, where: string): LocksmithSemaphore {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new SluiceError('invalid-value', `${where} is not locksmith's semaphore JSON`, where);
  }
  const parsed = LocksmithSemaphoreSchema.safeParse(json);
  if (!parsed.success) {
    throw new SluiceError(
      'invalid-value',
      `${where} is not locksmith's semaphore ({"semaphore":N,"max":N,"holders":[...]})`,
      where,
    );
  }
  return { ...parsed.data, holders: [...(parsed.data.holders ?? [])] };
}

/**
 * What `SetMax(0)` of locksmith's own code makes of a semaphore: max 0, the free count lowered by
 * the old max, holders kept. No locksmith node can take the lock then (its free count is at most
 * 0), and holders can still give theirs back.
 */
export function frozen(sem: LocksmithSemaphore): LocksmithSemaphore {
  return { semaphore: sem.semaphore - sem.max, max: 0, holders: [...sem.holders] };
}

/**
 * The frozen semaphore as the value to write: the value read with only `semaphore` and `max`
 * changed, so it stays in locksmith's own form (`"holders":null` included) and keeps any field
 * this code does not know.
 */
function frozenValue(ls: LocksmithRead): string {
  const after = frozen(ls.semaphore);
  const value = JSON.parse(ls.raw) as Record<string, unknown>;
  return JSON.stringify({ ...value, semaphore: after.semaphore, max: after.max });
}

/** locksmith's semaphore in etcd's v3 keyspace (Flatcar's v3 port of locksmith). */
export async function readLocksmithV3(client: Etcd3, key: string): Promise<LocksmithRead | null> {
  const res = await etcdCall(`a read of ${key}`, () => client.get(key).exec());
  const kv = res.kvs[0];
  if (!kv) return null;
  const raw = kv.value.toString();
  return {
    api: 'v3',
    key,
    semaphore: parseSemaphore(raw, `v3 key ${key}`),
    index: Number(kv.version),
    raw,
  };
}

/**
 * A small client for etcd's v2 keys API, which classic locksmith uses: a GET and a
 * compare-and-swap PUT over HTTP(S), with the same TLS files and user as the v3 connection.
 */
export class V2Keys {
  constructor(private readonly opts: EtcdConnectionOptions) {}

  async #call(
    method: 'GET' | 'PUT',
    key: string,
    query: string,
    body?: string,
  ): Promise<{ status: number; text: string }> {
    const tls = Boolean(this.opts.caFile || this.opts.certFile || this.opts.keyFile);
    const files = {
      ...(this.opts.caFile ? { ca: await readFile(this.opts.caFile) } : {}),
      ...(this.opts.certFile ? { cert: await readFile(this.opts.certFile) } : {}),
      ...(this.opts.keyFile ? { key: await readFile(this.opts.keyFile) } : {}),
    };
    let last: unknown;
    for (const endpoint of this.opts.endpoints) {
      const base = /^https?:\/\//.test(endpoint)
        ? endpoint
        : `${tls ? 'https' : 'http'}://${endpoint}`;
      const url = new URL(`/v2/keys/${key}${query}`, base);
      const auth = this.opts.username
        ? `Basic ${Buffer.from(`${this.opts.username}:${this.opts.password ?? ''}`).toString('base64')}`
        : undefined;
      try {
        return await new Promise((resolve, reject) => {
          const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
          const req = send(
            url,
            {
              method,
              timeout: 5000,
              ...files,
              headers: {
                ...(auth ? { authorization: auth } : {}),
                ...(body !== undefined
                  ? { 'content-type': 'application/x-www-form-urlencoded' }
                  : {}),
              },
            },
            (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (d: string) => {
                text += d;
              });
              res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
            },
          );
          req.on('timeout', () => req.destroy(new Error('timed out')));
          req.on('error', reject);
          req.end(body);
        });
      } catch (error) {
        last = error;
      }
    }
    throw new SluiceError(
      'etcd-unavailable',
      `etcd's v2 keys API did not answer a ${method} of ${key}: ${last instanceof Error ? last.message : String(last)}`,
    );
  }

  /** Reads locksmith's semaphore through the v2 API; null when the key (or the API) is absent. */
  async read(key: string): Promise<LocksmithRead | null> {
    const { status, text } = await this.#call('GET', key, '');
    if (status === 404) return null; // no such key, or v2 not served ("404 page not found")
    if (status === 401 || status === 403) {
      throw new SluiceError('etcd-denied', `etcd denied a v2 read of ${key}: ${text.trim()}`);
    }
    if (status !== 200) {
      throw new SluiceError('etcd-unavailable', `a v2 read of ${key} answered ${status}`);
    }
    const node = (JSON.parse(text) as { node?: { value?: string; modifiedIndex?: number } }).node;
    const raw = node?.value ?? '';
    return {
      api: 'v2',
      key,
      semaphore: parseSemaphore(raw, `v2 key /${key}`),
      index: node?.modifiedIndex ?? 0,
      raw,
    };
  }

  /** Compare-and-swap on modifiedIndex. False when the value changed meanwhile. */
  async swap(key: string, value: string, prevIndex: number): Promise<boolean> {
    const { status, text } = await this.#call(
      'PUT',
      key,
      `?prevIndex=${prevIndex}`,
      `value=${encodeURIComponent(value)}`,
    );
    if (status === 200 || status === 201) return true;
    if (status === 412) return false; // errorCode 101: compare failed
    throw new SluiceError(
      'etcd-unavailable',
      `a v2 write of ${key} answered ${status}: ${text.trim()}`,
    );
  }
}

/** What a migration does (or did), for `sluicectl migrate-locksmith` and `--dry-run`. */
export interface MigrationPlan {
  group: string;
  locksmith: {
    api: 'v2' | 'v3';
    key: string;
    before: LocksmithSemaphore;
    after: LocksmithSemaphore;
  };
  /** Sluice's max: the value before (null when unset) and after. */
  max: { before: string | null; after: number; changed: boolean };
  /** Holders recorded as migrated slots. */
  migrated: string[];
  /** Holders left out, with why (already in sluice's group). */
  skipped: { node: string; why: string }[];
  /** Sluice holders already there before the migration. */
  sluiceHolders: string[];
  /** Slots taken in sluice's group once migrated: its markers, migrated ones included. */
  taken: number;
  /** True when locksmith was already frozen and every holder already migrated: nothing to do. */
  nothingToDo: boolean;
}

/** Options of `migrateLocksmith()`. */
export interface MigrateOptions {
  /** Set sluice's max to locksmith's even when it is set already. */
  overwrite?: boolean;
  /** Plan only: write nothing. */
  dryRun?: boolean;
  /** Which of locksmith's semaphores: found by looking (v3 first, then v2) when not given. */
  api?: 'v2' | 'v3';
  /** For the v2 API: how to reach etcd over HTTP(S). */
  v2?: V2Keys;
  /** Sluice's max to set, instead of locksmith's (needed when locksmith is frozen already). */
  max?: number;
  /** Who migrates (`user@host`), for the `migrate-locksmith` record in history. */
  by?: string;
  now?: () => Date;
}

/** Reads locksmith's semaphore for the group from v3, then v2 (or only the API asked for). */
async function findLocksmith(
  client: Etcd3,
  group: string,
  opts: MigrateOptions,
): Promise<LocksmithRead> {
  const key = locksmithSemaphoreKey(group);
  const v3 = opts.api === 'v2' ? null : await readLocksmithV3(client, key);
  const v2 = opts.api === 'v3' || !opts.v2 ? null : await opts.v2.read(key);
  if (v3 && v2 && opts.api === undefined) {
    throw new SluiceError(
      'invalid-config',
      `locksmith's semaphore ${key} exists in both etcd's v2 and v3 keyspaces; say which one locksmithd uses with --api v2 or --api v3`,
      '--api',
    );
  }
  const found = v3 ?? v2;
  if (!found) {
    const where = opts.api ? `etcd's ${opts.api} keyspace` : "etcd's v3 keyspace or v2 keys API";
    throw new SluiceError(
      'refused',
      `no locksmith semaphore for group ${group}: ${key} is not in ${where}${opts.v2 || opts.api === 'v3' ? '' : ' (v2 not checked)'}`,
    );
  }
  return found;
}

/**
 * Migrates a live locksmith semaphore into sluice's group `keys` (see the module comment), or with
 * `dryRun` only says what it would do. Returns the plan as carried out.
 */
export async function migrateLocksmith(
  client: Etcd3,
  keys: GroupKeys,
  opts: MigrateOptions = {},
): Promise<MigrationPlan> {
  const now = opts.now ?? (() => new Date());
  // locksmith's max as first read: once frozen (by this run's v2 step) its value reads 0.
  let firstMax: number | undefined;
  let first: MigrationPlan | undefined;
  for (let attempt = 1; ; attempt++) {
    const ls = await findLocksmith(client, keys.group, opts);
    firstMax ??= ls.semaphore.max;
    const sluice = await readSluiceSide(client, keys, ls.semaphore.holders);
    const plan = makePlan(keys, ls, sluice, { ...opts, locksmithMax: firstMax });
    if (first) plan.locksmith.before = first.locksmith.before;
    first ??= plan;
    if (opts.dryRun || plan.nothingToDo) return plan;

    // v2: freeze locksmith first, with its own compare-and-swap; then nothing more reboots there.
    if (ls.api === 'v2' && ls.semaphore.max !== 0) {
      const swapped = await opts.v2!.swap(ls.key, frozenValue(ls), ls.index);
      if (!swapped) {
        if (attempt >= 5) throw changedWhileMigrating(ls.key);
        continue;
      }
    }
    const done = await commitSluiceSide(client, keys, ls, sluice, plan, now(), opts.by ?? '');
    if (done) {
      await pruneHistory(client, keys, HISTORY_LIMIT);
      return plan;
    }
    if (attempt >= 5) throw changedWhileMigrating(keys.holdingPrefix);
  }
}

function changedWhileMigrating(what: string): SluiceError {
  return new SluiceError(
    'refused',
    `${what} kept changing while migrating; nothing more was written; run the command again`,
  );
}

interface SluiceSide {
  revision: number;
  max: { value: string | null; modRevision: number };
  /** Every holding marker in the group, by node. */
  markers: Map<string, HoldingMarker | null>;
  /** Holders of locksmith's semaphore that have a sluice queue key. */
  queued: Set<string>;
}

async function readSluiceSide(
  client: Etcd3,
  keys: GroupKeys,
  holders: readonly string[],
): Promise<SluiceSide> {
  const ops: IRequestOp[] = [
    { request_range: { key: Buffer.from(keys.max) } },
    {
      request_range: {
        key: Buffer.from(keys.holdingPrefix),
        range_end: prefixEnd(keys.holdingPrefix),
      },
    },
    ...holders.map((n) => ({
      request_range: { key: Buffer.from(keys.queue(n)), keys_only: true },
    })),
  ];
  const res = await etcdCall(`a read of ${keys.root}`, () =>
    client.kv.txn({ compare: [], success: ops }),
  );
  const [maxRes, markerRes, ...queueRes] = res.responses;
  const maxKv = maxRes?.response_range?.kvs[0];
  const markers = new Map<string, HoldingMarker | null>();
  for (const raw of markerRes?.response_range?.kvs ?? []) {
    const kv = toRawKV(raw);
    let marker: HoldingMarker | null = null;
    try {
      marker = JSON.parse(kv.value) as HoldingMarker;
    } catch {
      // Unreadable: still a holder.
    }
    markers.set(kv.key.slice(keys.holdingPrefix.length), marker);
  }
  const queued = new Set<string>();
  queueRes.forEach((r, i) => {
    if ((r.response_range?.kvs.length ?? 0) > 0) queued.add(holders[i]!);
  });
  return {
    revision: Number(res.header.revision),
    max: {
      value: maxKv ? maxKv.value.toString() : null,
      modRevision: maxKv ? Number(maxKv.mod_revision) : 0,
    },
    markers,
    queued,
  };
}

function makePlan(
  keys: GroupKeys,
  ls: LocksmithRead,
  sluice: SluiceSide,
  opts: MigrateOptions & { locksmithMax: number },
): MigrationPlan {
  const migrated: string[] = [];
  const skipped: { node: string; why: string }[] = [];
  for (const node of ls.semaphore.holders) {
    const marker = sluice.markers.get(node);
    if (marker?.migrated === 'locksmith') continue; // recorded by an earlier run
    if (sluice.markers.has(node)) {
      skipped.push({ node, why: `already holds a slot in sluice's group ${keys.group}` });
    } else if (sluice.queued.has(node)) {
      skipped.push({ node, why: 'already runs sluiced (it is in the queue of the group)' });
    } else if (!/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}$/.test(node)) {
      throw new SluiceError(
        'invalid-value',
        `locksmith holder ${JSON.stringify(node.slice(0, 60))} in ${ls.key} is not a node id sluice can store`,
        ls.key,
      );
    } else {
      migrated.push(node);
    }
  }
  const parsed = sluice.max.value === null ? null : parseMax(sluice.max.value, keys.max);
  const current = parsed?.ok ? parsed.value : null;
  const keep = current !== null && !opts.overwrite && opts.max === undefined;
  if (!keep && opts.max === undefined && opts.locksmithMax === 0) {
    throw new SluiceError(
      'invalid-config',
      `locksmith's semaphore ${ls.key} is frozen already (max 0), so locksmith's max is unknown, and sluice's ${keys.max} is ${sluice.max.value === null ? 'not set' : 'to be overwritten'}; give the max with --max N`,
      '--max',
    );
  }
  const after = keep ? current : (opts.max ?? Math.max(0, opts.locksmithMax));
  const lsAfter = ls.semaphore.max === 0 ? ls.semaphore : frozen(ls.semaphore);
  const alreadyFrozen = ls.semaphore.max === 0;
  return {
    group: keys.group,
    locksmith: { api: ls.api, key: ls.key, before: ls.semaphore, after: lsAfter },
    max: { before: sluice.max.value, after, changed: String(after) !== sluice.max.value },
    migrated,
    skipped,
    taken: sluice.markers.size + migrated.length,
    sluiceHolders: [...sluice.markers]
      .filter(([, m]) => m?.migrated !== 'locksmith')
      .map(([n]) => n),
    // Frozen already, every holder recorded, and max as wanted: a second run changes nothing.
    nothingToDo: alreadyFrozen && migrated.length === 0 && String(after) === sluice.max.value,
  };
}

async function commitSluiceSide(
  client: Etcd3,
  keys: GroupKeys,
  ls: LocksmithRead,
  sluice: SluiceSide,
  plan: MigrationPlan,
  now: Date,
  by: string,
): Promise<boolean> {
  const compares: ICompare[] = [
    // No marker created or changed since the read: an admission in between fails this txn.
    {
      key: Buffer.from(keys.holdingPrefix),
      range_end: prefixEnd(keys.holdingPrefix),
      target: 'Mod',
      result: 'Less',
      mod_revision: sluice.revision + 1,
    },
    {
      key: Buffer.from(keys.max),
      target: 'Mod',
      result: 'Equal',
      mod_revision: sluice.max.modRevision,
    },
    // The holders are still not queued in sluice.
    ...plan.migrated.map(
      (n): ICompare => ({
        key: Buffer.from(keys.queue(n)),
        target: 'Create',
        result: 'Equal',
        create_revision: 0,
      }),
    ),
  ];
  const ops: IRequestOp[] = [
    // Always written: every admission txn is guarded on max's mod revision.
    { request_put: { key: Buffer.from(keys.max), value: Buffer.from(String(plan.max.after)) } },
    ...plan.migrated.map((node): IRequestOp => {
      const marker: HoldingMarker = {
        v: 1,
        node,
        hostname: '',
        createRevision: 1,
        grantedAt: now.toISOString(),
        migrated: 'locksmith',
      };
      return {
        request_put: {
          key: Buffer.from(keys.holding(node)),
          value: Buffer.from(JSON.stringify(marker)),
        },
      };
    }),
  ];
  // The audit trail, in the txn that makes the change: max before and after, locksmith's key and
  // the holders taken over.
  const action: ActionRecord = {
    v: 1,
    kind: 'action',
    action: 'migrate-locksmith',
    group: keys.group,
    at: now.toISOString(),
    by,
    old: plan.max.before,
    new: String(plan.max.after),
    reason: `from locksmith's ${ls.api === 'v2' ? 'v2 key /' : 'v3 key '}${ls.key}: migrated slot(s) ${plan.migrated.length === 0 ? 'none' : plan.migrated.join(', ')}`,
  };
  ops.push({
    request_put: {
      key: Buffer.from(
        keys.actionHistory(now.getTime(), 'migrate-locksmith', randomUUID().slice(0, 8)),
      ),
      value: Buffer.from(JSON.stringify(action)),
    },
  });
  if (ls.api === 'v3' && ls.semaphore.max !== 0) {
    compares.push({
      key: Buffer.from(ls.key),
      target: 'Version',
      result: 'Equal',
      version: ls.index,
    });
    ops.push({
      request_put: {
        key: Buffer.from(ls.key),
        value: Buffer.from(frozenValue(ls)),
      },
    });
  }
  const res = await etcdCall(`the migration txn on ${keys.root}`, () =>
    client.kv.txn({ compare: compares, success: ops }),
  );
  return res.succeeded;
}
