/**
 * Slots migrated from locksmith: a holding marker with `migrated: "locksmith"` and no queue key.
 * It counts against max like any holder, it is not a lost holder (it halts nothing), and
 * admission stays safe when nodes decide on views that are out of date by the time their txn
 * commits: the model below commits an admission only if the guard of the real txn holds (the
 * node's own key as read, no marker for it, the settings keys' mod revisions, each live holder's
 * queue key), and a migration only as sluicectl's txn does (no marker changed since its read, and
 * max written, which fails admissions decided before it).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GroupKeys } from './keys.js';
import {
  type AdmissionView,
  admissionView,
  buildSnapshot,
  decide,
  decideAdmission,
  lostHolders,
  mustHalt,
  type RawKV,
} from './snapshot.js';
import { groupStatus } from './status.js';

const keys = new GroupKeys('/sluice/v1/', 'g');
const NOW = new Date('2025-11-25T12:00:00Z');

function record(node: string, state = 'waiting'): string {
  const at = NOW.toISOString();
  return JSON.stringify({ v: 1, node, hostname: node, state, since: at, enqueuedAt: at });
}

/** A migrated marker, as `sluicectl migrate-locksmith` writes it. */
function migrated(node: string): string {
  return JSON.stringify({
    v: 1,
    node,
    hostname: '',
    createRevision: 1,
    grantedAt: NOW.toISOString(),
    migrated: 'locksmith',
  });
}

class Store {
  rev = 0;
  readonly kvs = new Map<string, RawKV>();
  put(key: string, value: string): void {
    this.rev++;
    const old = this.kvs.get(key);
    this.kvs.set(key, {
      key,
      value,
      createRevision: old?.createRevision ?? this.rev,
      modRevision: this.rev,
      lease: '0',
    });
  }
  del(key: string): void {
    this.rev++;
    this.kvs.delete(key);
  }
  snapshot() {
    return buildSnapshot(keys, this.kvs.values(), this.rev);
  }
  markers(): number {
    return [...this.kvs.keys()].filter((k) => k.startsWith(keys.holdingPrefix)).length;
  }
  /** Commits an admission decided on `view` if the admission txn's guard holds now. */
  admit(view: AdmissionView): boolean {
    const self = view.self!;
    const now = this.kvs.get(self.key);
    if (now?.createRevision !== self.createRevision || now.modRevision !== self.modRevision) {
      return false;
    }
    if (this.kvs.has(keys.holding(view.node))) return false;
    for (const [key, rev] of Object.entries(view.settingsRevisions)) {
      if ((this.kvs.get(key)?.modRevision ?? 0) !== rev) return false;
    }
    for (const [holder, createRevision] of view.holderKeys) {
      if (this.kvs.get(keys.queue(holder))?.createRevision !== createRevision) return false;
    }
    this.rev++;
    const rev = this.rev;
    this.kvs.set(self.key, { ...now, value: record(view.node, 'holding'), modRevision: rev });
    const marker = JSON.stringify({
      v: 1,
      node: view.node,
      hostname: '',
      createRevision: self.createRevision,
      grantedAt: NOW.toISOString(),
    });
    this.kvs.set(keys.holding(view.node), {
      key: keys.holding(view.node),
      value: marker,
      createRevision: rev,
      modRevision: rev,
      lease: '0',
    });
    return true;
  }
}

describe('migrated slots', () => {
  it('count against max, are not lost holders, and never halt the group', () => {
    const s = new Store();
    s.put(keys.max, '2');
    s.put(keys.holding('ls-1'), migrated('ls-1'));
    s.put(keys.queue('a'), record('a'));
    s.put(keys.queue('b'), record('b'));
    const snap = s.snapshot();
    expect(lostHolders(snap)).toEqual([]);
    expect(mustHalt(snap)).toBe(false);
    expect(snap.holding[0]).toMatchObject({ node: 'ls-1', orphan: false, migrated: true });
    expect(decide(snap, 'a', NOW)).toMatchObject({ kind: 'admit' });
    // One slot is the migrated one: b waits behind a.
    expect(decide(snap, 'b', NOW)).toMatchObject({ kind: 'wait', reason: 'queue', rank: 2 });
    // The admission txn has no queue key to guard for a migrated holder.
    expect(admissionView(snap, 'a').holderKeys.has('ls-1')).toBe(false);
  });

  it('show in status as holders migrated from locksmith, and take a slot', () => {
    const s = new Store();
    s.put(keys.max, '2');
    s.put(keys.holding('ls-1'), migrated('ls-1'));
    const status = groupStatus(s.snapshot(), NOW);
    expect(status.available).toBe(1);
    expect(status.holders).toMatchObject([
      {
        node: 'ls-1',
        state: 'migrated',
        reason: "held in locksmith's semaphore when it was migrated",
      },
    ]);
    expect(status.errors).toEqual([]);
  });

  it('never let an admission exceed max, whatever views the nodes decided on (property)', () => {
    const nodes = ['n0', 'n1', 'n2'];
    const on = <T extends string>(t: T, n: fc.Arbitrary<string>) =>
      fc.record({ t: fc.constant(t), n });
    const node = fc.constantFrom(...nodes);
    const op = fc.oneof(
      { weight: 3, arbitrary: on('queue', node) },
      { weight: 2, arbitrary: on('read', node) },
      { weight: 3, arbitrary: on('commit', node) },
      { weight: 1, arbitrary: on('release', node) },
      { weight: 1, arbitrary: on('migrate', fc.constant('ls-a')) },
      { weight: 1, arbitrary: on('unmigrate', fc.constant('ls-a')) },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 }), fc.array(op, { maxLength: 30 }), (max, ops) => {
        const s = new Store();
        s.put(keys.max, String(max));
        const pending = new Map<string, AdmissionView>();
        let migrationRead: number | null = null;
        for (const { t, n } of ops) {
          if (t === 'queue' && !s.kvs.has(keys.queue(n))) s.put(keys.queue(n), record(n));
          if (t === 'read') {
            // Every node wakes on the same event and decides on the same revision, as agents do;
            // the commits come later, in any order.
            const snapshot = s.snapshot();
            for (const node of nodes) {
              const view = admissionView(snapshot, node);
              if (decideAdmission(view, NOW).kind === 'admit') pending.set(node, view);
            }
            // A migration may read the markers at the same time.
            migrationRead ??= s.rev;
          }
          if (t === 'commit') {
            const view = pending.get(n);
            pending.delete(n);
            if (view && s.admit(view)) expect(s.markers()).toBeLessThanOrEqual(max);
          }
          if (t === 'release' && s.kvs.has(keys.holding(n))) {
            s.del(keys.holding(n));
            s.del(keys.queue(n));
          }
          if (t === 'migrate' && !s.kvs.has(keys.holding(n))) {
            // sluicectl's txn: no marker created or changed since its read, then the markers and
            // max in one step (max written, so admissions decided before it fail their guard).
            const since = migrationRead ?? s.rev;
            migrationRead = null;
            const changed = [...s.kvs.values()].some(
              (kv) => kv.key.startsWith(keys.holdingPrefix) && kv.modRevision > since,
            );
            if (!changed) {
              s.rev++;
              const rev = s.rev;
              const marker = { key: keys.holding(n), value: migrated(n), lease: '0' };
              s.kvs.set(marker.key, { ...marker, createRevision: rev, modRevision: rev });
              s.kvs.set(keys.max, { ...s.kvs.get(keys.max)!, modRevision: rev });
            }
          }
          if (t === 'unmigrate') s.kvs.has(keys.holding(n)) && s.del(keys.holding(n));
        }
      }),
      {
        numRuns: 3000,
        examples: [
          [
            2,
            [
              { t: 'migrate', n: 'ls-a' },
              { t: 'queue', n: 'n0' },
              { t: 'queue', n: 'n1' },
              { t: 'read', n: 'n0' },
              { t: 'commit', n: 'n0' },
              { t: 'commit', n: 'n1' },
            ],
          ],
        ],
      },
    );
  });
});
