/**
 * A group's keys as etcd would hold them, built in memory for unit tests of the rules that read a
 * snapshot (admission, blockers, logs): each write gets the next revision, as in etcd. Imported as
 * `@sluice/core/fixture` by tests only; not part of core's API.
 */
import { GroupKeys } from './keys.js';
import { buildSnapshot, type GroupSnapshot, type RawKV } from './snapshot.js';

/** Raw key-values of one group with increasing revisions. */
export class GroupFixture {
  rev = 0;
  readonly kvs = new Map<string, RawKV>();

  constructor(
    readonly keys = new GroupKeys('/sluice/v1/', 'default'),
    readonly now = new Date('2026-12-01T15:00:00Z'),
  ) {}

  put(key: string, value: string, lease = '0'): RawKV {
    this.rev++;
    const old = this.kvs.get(key);
    const kv = {
      key,
      value,
      createRevision: old?.createRevision ?? this.rev,
      modRevision: this.rev,
      lease,
    };
    this.kvs.set(key, kv);
    return kv;
  }

  del(key: string): void {
    this.rev++;
    this.kvs.delete(key);
  }

  /** A node joins the queue (its session lease is 7), with `fields` added to its record. */
  queue(node: string, fields: Record<string, unknown> = {}): void {
    this.put(this.keys.queue(node), this.#record(node, 'waiting', fields), '7');
  }

  /** A queued node takes a slot (its hold lease is 8); its record and marker keep its domain. */
  admit(node: string): void {
    const q = this.kvs.get(this.keys.queue(node))!;
    const { domain } = JSON.parse(q.value) as { domain?: string };
    this.put(this.keys.queue(node), this.#record(node, 'holding', { domain }), '8');
    this.marker(node, q.createRevision, domain);
  }

  /** A holding marker alone: with no queue key it is a lost holder. */
  marker(node: string, createRevision = 1, domain?: string): void {
    const marker = { v: 1, node, createRevision, grantedAt: this.now.toISOString(), domain };
    this.put(this.keys.holding(node), JSON.stringify(marker));
  }

  /** The pause sluice writes when lost holders halt the group. */
  halt(reason: string): void {
    const pause = { reason, since: this.now.toISOString(), by: 'sluice' };
    this.put(this.keys.paused, JSON.stringify(pause));
  }

  snapshot(): GroupSnapshot {
    return buildSnapshot(this.keys, this.kvs.values(), this.rev);
  }

  #record(node: string, state: string, fields: Record<string, unknown> = {}): string {
    const at = this.now.toISOString();
    return JSON.stringify({
      v: 1,
      node,
      hostname: node,
      state,
      since: at,
      enqueuedAt: at,
      ...fields,
    });
  }
}
