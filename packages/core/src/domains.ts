/**
 * Failure domains (`groups/<g>/domain-max`): each holder counts in its node's domain, and the
 * admission rule under domain-max, `decideInDomains()`, which `decideAdmission()` hands over to
 * when the key is set. See docs/sluiced.md ("Failure domains") for the rule in words.
 */
import type { GroupKeys } from './keys.js';
import { parseRecord, QueueRecordSchema } from './records.js';
import type {
  AdmissionView,
  Decision,
  HoldingEntry,
  ParsedSettings,
  QueueEntry,
  RawKV,
  WaitReason,
} from './snapshot.js';

/** The group's `domain-max` when it is set and valid; null otherwise (no domain rule). */
export function domainLimit(settings: Pick<ParsedSettings, 'domainMax'>): number | null {
  return settings.domainMax.ok ? settings.domainMax.value : null;
}

/**
 * The failure domain of each waiter among queue keys `kvs` (null for one in no domain); the
 * holders' keys among them (a marker with their create revision in `holding`) are skipped. An
 * unreadable record has no known domain: it counts as able to go, which holds the nodes behind it
 * back (fair, and never unsafe); its own admission fails closed.
 */
export function waiterDomains(
  keys: GroupKeys,
  holding: readonly HoldingEntry[],
  kvs: Iterable<RawKV>,
): (string | null)[] {
  const markedAt = new Map(holding.map((h) => [h.node, h.marker?.createRevision]));
  const out: (string | null)[] = [];
  for (const kv of kvs) {
    if (markedAt.get(kv.key.slice(keys.queuePrefix.length)) === kv.createRevision) continue;
    const record = parseRecord(QueueRecordSchema, kv.value);
    out.push(record.ok ? (record.value.domain ?? null) : null);
  }
  return out;
}

/** Holders (lost ones included) per failure domain; a marker nobody can read counts in all. */
export function domainHolders(holding: readonly HoldingEntry[]): {
  inDomain: (domain: string) => number;
} {
  const counts = new Map<string, number>();
  let unreadable = 0;
  for (const h of holding) {
    if (h.marker === null) unreadable++;
    else if (h.marker.domain !== undefined) {
      counts.set(h.marker.domain, (counts.get(h.marker.domain) ?? 0) + 1);
    }
  }
  return { inDomain: (domain) => (counts.get(domain) ?? 0) + unreadable };
}

/**
 * How many of the waiters in `domains` (a domain each, null for none, in queue order or any
 * order) could take a slot now: each domain has `domainMax` minus its holders of room.
 */
export function couldGo(
  domains: Iterable<string | null>,
  inDomain: (domain: string) => number,
  domainMax: number,
): number {
  const seen = new Map<string, number>();
  let ready = 0;
  for (const d of domains) {
    if (d === null) {
      ready++;
      continue;
    }
    const n = seen.get(d) ?? 0;
    seen.set(d, n + 1);
    if (inDomain(d) + n < domainMax) ready++;
  }
  return ready;
}

/**
 * Admission under `domain-max`. Every marker takes one of max slots and one of its domain's. The
 * waiters of a domain go in queue order, as many at once as it has room; across domains, a node
 * goes if fewer of the waiters ahead of it could go now (their domain has room for them) than
 * there are free slots. So a node blocked only by its domain lets nodes of other domains pass it
 * and keeps its place: once its domain has room, it is ahead of them again. The counts are exact
 * at the commit because every admission under domain-max writes `admitted`, guarded on the
 * revision read: no other admission commits in between.
 */
export function decideInDomains(
  view: AdmissionView,
  self: QueueEntry,
  max: number,
  domainMax: number,
  wait: (reason: WaitReason, detail: string) => Decision,
): Decision {
  if (self.record === null) {
    return wait('invalid-value', `${self.key} cannot be read, so its failure domain is unknown`);
  }
  const taken = view.holding.length;
  const { inDomain } = domainHolders(view.holding);
  const ahead = view.aheadDomains;
  const domain = self.record.domain;
  if (domain !== undefined) {
    const before = (ahead ?? []).filter((d) => d === domain).length;
    if (inDomain(domain) + before >= domainMax) {
      const queued = before > 0 ? ` and ${before} of its nodes wait ahead of this one` : '';
      return wait(
        'domain-full',
        `failure domain ${domain} has ${inDomain(domain)} of ${domainMax} slot(s) taken (${view.keys.domainMax})${queued}; this node keeps its place, and nodes of other domains may pass it`,
      );
    }
  }
  if (taken >= max) return wait('queue', `${taken} of ${max} slot(s) taken`);
  const ready = couldGo(ahead ?? [], inDomain, domainMax);
  if (ahead === null || view.aheadDomainsCut || taken + ready >= max) {
    const more = ahead === null || view.aheadDomainsCut ? ' or later' : '';
    return wait(
      'queue',
      `position ${ready + 1}${more} among the nodes that can go, ${taken} of ${max} slot(s) taken`,
    );
  }
  return { kind: 'admit', rank: taken + ready };
}
