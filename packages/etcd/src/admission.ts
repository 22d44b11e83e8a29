/**
 * Admission, decided by etcd: the read an admission decision is taken from, and the txn that
 * takes the slot. See DESIGN.md ("Admission: the server decides").
 *
 * The read is one txn of small ranges at one revision R: the node's own queue key, every holding
 * marker, the settings keys, the queue keys of the nodes that hold a marker (keys only), and the
 * queue keys created before the node's own (keys only, cut off after a few more than max). No
 * local copy of the group is trusted and no response grows with the group. (etcd 3.4 ignores
 * `max_create_revision` when `count_only` is set, so the keys ahead are listed, without values,
 * rather than counted.)
 *
 * The admission txn is guarded on what the decision rested on: the settings keys' mod revisions,
 * the node's own key as read, no marker for the node, and each live holder's queue key still
 * having the create revision read at R, so a holder lost between the read and the commit fails it.
 *
 * Under `domain-max` the read also lists the waiters ahead with their values (a page at a time,
 * at R), to tell which of them could go now, and the txn is guarded on `admitted` and writes it:
 * admissions then commit one at a time, so the per-domain and overall counts read at R still hold
 * at the commit.
 */
import {
  type AdmissionView,
  buildAdmissionView,
  type CanaryRecord,
  canaryInputs,
  couldGo,
  domainHolders,
  domainLimit,
  type GroupKeys,
  type RawKV,
  SluiceError,
  seatState,
  waiterDomains,
} from '@sluice/core';
import type { Etcd3, ICompare, IRangeRequest, IRequestOp, IResponseOp } from 'etcd3';
import { etcdCall } from './errors.js';
import { prefixEnd, readPrefix, toRawKV } from './reads.js';

/** etcd's default `--max-txn-ops`: operations allowed in each part of one txn. */
export const DEFAULT_MAX_TXN_OPS = 128;

/**
 * The writes that seat `node` as a canary (see core/canary.ts), for its admission txn: the new
 * `canary-state` (guarded with the other settings keys), the node's canary record, and when a new
 * version's canary starts, the deletion of the last version's records.
 */
export function canarySeatOps(
  view: AdmissionView,
  seat: { version: string; start: boolean },
  now: Date,
): IRequestOp[] {
  const { keys, node } = view;
  const state = seatState(canaryInputs(view), seat, now);
  const record: CanaryRecord = { v: 1, node, version: seat.version, grantedAt: now.toISOString() };
  const put = (key: string, value: unknown): IRequestOp => ({
    request_put: { key: Buffer.from(key), value: Buffer.from(JSON.stringify(value)) },
  });
  const ops = [put(keys.canaryState, state), put(keys.canaryRecord(node), record)];
  if (seat.start) {
    for (const c of view.canaries) {
      if (c.node !== node) ops.push({ request_delete_range: { key: Buffer.from(c.key) } });
    }
  }
  return ops;
}

/** Operations of the admission txn other than one compare per live holder. */
const FIXED_COMPARES = 4;

/** How many keys ahead the read lists when the mirror has no better guess. */
const AHEAD_LIMIT = 64;

function range(key: string, extra: Partial<IRangeRequest> = {}): IRequestOp {
  return { request_range: { key: Buffer.from(key), ...extra } };
}

function prefixRange(prefix: string, extra: Partial<IRangeRequest> = {}): IRequestOp {
  return range(prefix, { range_end: prefixEnd(prefix), ...extra });
}

function kvsOf(response: IResponseOp | undefined): RawKV[] {
  return (response?.response_range?.kvs ?? []).map(toRawKV);
}

/** What `readAdmission()` needs to know besides the group. */
export interface AdmissionReadOptions {
  /** The create revision of the node's own queue key, as the node last knew it. */
  selfCreateRevision: number;
  /** Nodes believed to hold a marker (from the local mirror); read again if wrong. */
  holders?: Iterable<string>;
  /** The max believed in force (from the mirror), to cut the list of keys ahead short. */
  maxHint?: number;
  /** etcd's `--max-txn-ops`. Default 128. */
  maxTxnOps?: number;
}

/**
 * Reads what an admission decision for `node` needs, in one round trip at one revision (two when
 * the holders turned out to differ from the hint). Never reads a whole group.
 */
export async function readAdmission(
  client: Etcd3,
  keys: GroupKeys,
  node: string,
  options: AdmissionReadOptions,
): Promise<AdmissionView> {
  const maxTxnOps = options.maxTxnOps ?? DEFAULT_MAX_TXN_OPS;
  let holders = new Set(options.holders ?? []);
  for (let attempt = 0; ; attempt++) {
    const read = await readOnce(client, keys, node, options, holders, maxTxnOps);
    const markerNodes = new Set(read.markers.map((kv) => kv.key.slice(keys.holdingPrefix.length)));
    markerNodes.delete(node);
    const missing = [...markerNodes].some((n) => !holders.has(n));
    if (!missing || attempt >= 2) {
      if (missing) {
        throw new SluiceError(
          'etcd-unavailable',
          `the holders of ${keys.root} kept changing while reading them; trying again`,
        );
      }
      const view = buildAdmissionView(keys, node, read);
      if (domainLimit(view) === null || !view.self || !view.max.ok) return view;
      // Under domain-max: which waiters ahead could go now, read at the same revision.
      const ahead = await readAheadWaiters(client, view);
      return buildAdmissionView(keys, node, { ...read, ...ahead });
    }
    holders = markerNodes;
  }
}

/** Queue keys (with values) read per page by `readAheadWaiters()`. */
const AHEAD_PAGE = 256;

/**
 * Under domain-max: the queue keys created before the node's own, with values, read at the view's
 * revision a page at a time, until enough of them could go now to fill every free slot (the node
 * then waits whatever the rest are) or none are left.
 */
async function readAheadWaiters(
  client: Etcd3,
  view: AdmissionView,
): Promise<{ aheadDomains: (string | null)[]; aheadDomainsCut: boolean }> {
  const { keys } = view;
  const max = view.max.ok ? view.max.value : 0;
  const domainMax = domainLimit(view) ?? 0;
  const { inDomain } = domainHolders(view.holding);
  const free = max - view.holding.length;
  const domains: (string | null)[] = [];
  let from = Buffer.from(keys.queuePrefix);
  for (;;) {
    const res = await etcdCall(`a read of ${keys.queuePrefix} for admission`, () =>
      client.kv.range({
        key: from,
        range_end: prefixEnd(keys.queuePrefix),
        max_create_revision: Math.max(1, view.self!.createRevision - 1),
        revision: view.revision,
        limit: AHEAD_PAGE,
      }),
    );
    domains.push(...waiterDomains(keys, view.holding, res.kvs.map(toRawKV)));
    if (!res.more || res.kvs.length === 0) return { aheadDomains: domains, aheadDomainsCut: false };
    if (couldGo(domains, inDomain, domainMax) >= free) {
      return { aheadDomains: domains, aheadDomainsCut: true };
    }
    from = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.from([0])]);
  }
}

async function readOnce(
  client: Etcd3,
  keys: GroupKeys,
  node: string,
  options: AdmissionReadOptions,
  holders: ReadonlySet<string>,
  maxTxnOps: number,
) {
  const settings = keys.settings;
  // Keys ahead: enough to tell whether fewer than max stand ahead, plus lost holders' places.
  const aheadLimit = Math.max(AHEAD_LIMIT, (options.maxHint ?? 0) + 1);
  const ops: IRequestOp[] = [
    range(keys.queue(node)),
    prefixRange(keys.holdingPrefix),
    ...settings.map((key) => range(key)),
    range(keys.admitted),
    prefixRange(keys.queuePrefix, {
      keys_only: true,
      max_create_revision: Math.max(1, options.selfCreateRevision - 1),
      limit: aheadLimit,
    }),
    // A few records at most: the canaries of the version being canaried.
    prefixRange(keys.canariesPrefix),
  ];
  const holderList = [...holders].filter((n) => n !== node);
  const perKey = holderList.length + ops.length <= maxTxnOps;
  if (perKey) {
    for (const n of holderList) ops.push(range(keys.queue(n), { keys_only: true }));
  }
  const res = await etcdCall(`a read of ${keys.root} for admission`, () =>
    client.kv.txn({ compare: [], success: ops }),
  );
  const r = res.responses;
  const revision = Number(res.header.revision);
  const admitted = kvsOf(r[2 + settings.length])[0];
  const aheadRange = r[3 + settings.length]?.response_range;
  let holderKeys: RawKV[];
  if (perKey) {
    holderKeys = r.slice(5 + settings.length).flatMap((op) => kvsOf(op));
  } else {
    // More holders than one txn may read key by key: read their queue keys (keys only) at R.
    const wanted = new Set(holderList.map((n) => keys.queue(n)));
    const all = await readPrefix(client, keys.queuePrefix, `a read of ${keys.queuePrefix}`, {
      keysOnly: true,
      revision,
    });
    holderKeys = all.kvs.filter((kv) => wanted.has(kv.key));
  }
  const self = kvsOf(r[0])[0];
  // The ahead list was computed for the create revision we asked about; if the key is another one
  // now (re-created), the caller sees a different `self` and starts over.
  return {
    revision,
    self,
    markers: kvsOf(r[1]),
    settings: r.slice(2, 2 + settings.length).flatMap((op) => kvsOf(op)),
    ahead: aheadRange?.kvs.length ?? 0,
    aheadMore: Boolean(aheadRange?.more),
    holderKeys,
    admitted,
    canaries: kvsOf(r[4 + settings.length]),
  };
}

/** Why an admission txn cannot be built for a view, or null when it can. */
export function admissionTooBig(
  view: AdmissionView,
  maxTxnOps = DEFAULT_MAX_TXN_OPS,
): string | null {
  const compares = FIXED_COMPARES + view.keys.settings.length + view.holderKeys.size;
  if (compares <= maxTxnOps) return null;
  return `${view.keys.max}: ${view.holderKeys.size} holders at once need ${compares} compares in the admission txn, more than etcd's ${maxTxnOps} (--max-txn-ops); raise etcd's --max-txn-ops and sluice's etcd.maxTxnOps, or lower max`;
}

/**
 * The compares of an admission txn for `view`: the node's own key exactly as read, no marker for
 * the node, the settings keys as read, and every live holder's queue key still in place.
 */
export function admissionGuard(view: AdmissionView): ICompare[] {
  const self = view.self;
  if (!self) throw new SluiceError('refused', `${view.node} is not queued`);
  const compares: ICompare[] = [
    {
      key: Buffer.from(self.key),
      target: 'Create',
      result: 'Equal',
      create_revision: self.createRevision,
    },
    { key: Buffer.from(self.key), target: 'Mod', result: 'Equal', mod_revision: self.modRevision },
    {
      key: Buffer.from(view.keys.holding(view.node)),
      target: 'Create',
      result: 'Equal',
      create_revision: 0,
    },
  ];
  for (const [key, rev] of Object.entries(view.settingsRevisions)) {
    compares.push({ key: Buffer.from(key), target: 'Mod', result: 'Equal', mod_revision: rev });
  }
  if (domainLimit(view) !== null) {
    // Admissions under domain-max commit one at a time: see GroupKeys.admitted.
    compares.push({
      key: Buffer.from(view.keys.admitted),
      target: 'Mod',
      result: 'Equal',
      mod_revision: view.admittedRevision,
    });
  }
  for (const [holder, createRevision] of view.holderKeys) {
    compares.push({
      key: Buffer.from(view.keys.queue(holder)),
      target: 'Create',
      result: 'Equal',
      create_revision: createRevision,
    });
  }
  return compares;
}

/**
 * Reads what deciding a halt needs, at one revision: every marker, whether each holder's queue
 * key is still there, the pause and the loss budget. `holders` is a guess of the nodes that hold
 * a marker (read again if wrong, as for an admission).
 */
export function readHalt(
  client: Etcd3,
  keys: GroupKeys,
  holders: Iterable<string>,
  maxTxnOps = DEFAULT_MAX_TXN_OPS,
): Promise<AdmissionView> {
  // No node is asking for a slot: read for the empty node id, which no queue key has, with
  // nothing ahead of it.
  return readAdmission(client, keys, '', { selfCreateRevision: 1, holders, maxTxnOps });
}
