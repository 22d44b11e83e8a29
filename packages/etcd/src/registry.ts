/**
 * One node, one agent: the registration of a live agent at `groups/<g>/nodes/<node>`.
 *
 * A node id is no proof of identity: cloned machines share `/etc/machine-id`, and a config
 * template may fix `node.id`. So each agent keeps an instance token on local disk and registers
 * with it, on a lease of its own. The key is created if absent, or taken over from the same token
 * (this agent's previous process). A key held under another token, or under this token by a live
 * agent on another boot (a machine cloned with its token file), is a second agent with this id:
 * this one stays out of the group, says so at `groups/<g>/conflicts/<node>`, and tries again
 * later. Registration costs one write per agent start, and nothing per idle hour.
 */
import {
  type GroupKeys,
  type NodeRegistration,
  NodeRegistrationSchema,
  parseRecord,
  type Registered,
  type Registration,
} from '@sluice/core';
import type { Etcd3 } from 'etcd3';
import { etcdCall } from './errors.js';
import { Session } from './session.js';

/** Parses a registration value; null when it is not one. */
export function parseRegistration(text: string): NodeRegistration | null {
  const parsed = parseRecord(NodeRegistrationSchema, text);
  return parsed.ok ? parsed.value : null;
}

/** Why a value is not a registration, for status. */
export function registrationProblem(text: string): string | null {
  const parsed = parseRecord(NodeRegistrationSchema, text);
  if (parsed.ok) return null;
  return parsed.error.kind === 'not-json'
    ? 'not JSON'
    : (parsed.error.detail ?? parsed.error.message);
}

/** True when a queue record was written under `token` on the boot `bootId`. */
function previousBoot(text: string, token: string, bootId: string): boolean {
  try {
    const record = JSON.parse(text) as { token?: unknown; bootId?: unknown };
    return record.token === token && record.bootId === bootId;
  } catch {
    return false;
  }
}

/** How long `register()` watches another boot's live lease under our token, at most, in ms. */
const LIVENESS_PROBE_MS = 15_000;

/** This agent's registration in its group: the etcd implementation of `Registration`. */
export class NodeRegistry implements Registration {
  #session: Session | null = null;
  #record: NodeRegistration;
  #registered = false;
  /** True once this agent wrote a conflict note, which it removes when it registers. */
  #noted = false;

  constructor(
    private readonly client: Etcd3,
    readonly keys: GroupKeys,
    record: Omit<NodeRegistration, 'v' | 'problem'>,
    /** TTL of the registration's lease, in seconds. */
    private readonly ttl = 30,
  ) {
    this.#record = { ...record, v: 1 } as NodeRegistration;
  }

  /** Where the agent registers: `groups/<g>/nodes/<node>`. */
  get key(): string {
    return this.keys.registration(this.#record.node);
  }

  /** True while this agent holds its registration and its lease is alive. */
  get registered(): boolean {
    return this.#registered && Boolean(this.#session?.alive);
  }

  /** Aborted when the registration's lease is lost (cut off from etcd for longer than its TTL). */
  get lost(): AbortSignal | null {
    return this.#session?.lost ?? null;
  }

  /**
   * Registers this agent: creates its key, or takes it over from this agent's previous process.
   * Refuses (without writing the other's key) when another live agent holds the node id.
   */
  async register(): Promise<Registered> {
    if (!this.#session?.alive) {
      this.#session?.close();
      this.#session = await Session.open(this.client, this.ttl);
    }
    const session = this.#session;
    const key = this.key;
    const value = JSON.stringify(this.#record);
    const queueKey = this.keys.queue(this.#record.node);
    const res = await etcdCall(`registering at ${key}`, () =>
      this.client
        .if(key, 'Create', '==', 0)
        .then(this.client.put(key).value(value).lease(session.id))
        .else(this.client.get(key), this.client.get(queueKey))
        .commit(),
    );
    if (res.succeeded) return this.#done();
    const kv = res.responses[0]?.response_range?.kvs[0];
    if (!kv) return this.register(); // Gone in between: try again.
    const other = parseRegistration(kv.value.toString());
    const lease = String(kv.lease);
    if (lease === session.id) return this.#done();
    if (other?.token !== this.#record.token) {
      return this.#conflict(other, 'another agent with this node id is registered');
    }
    if (other.bootId !== this.#record.bootId) {
      // Our token on another boot. After a reboot the slot's record proves it was our own
      // previous boot: it holds that boot id under our token. Without that proof, someone still
      // refreshing the lease is a second agent (the token file was cloned with the machine).
      const record = res.responses[1]?.response_range?.kvs[0]?.value.toString();
      const ours = record !== undefined && previousBoot(record, this.#record.token, other.bootId);
      if (!ours && (await this.#leaseKeptAlive(lease))) {
        return this.#conflict(
          other,
          'another live agent on another boot registered with this instance token (was the token file cloned with the machine?)',
        );
      }
    }
    // Our own previous process: take the key over, guarded on what we read.
    const taken = await etcdCall(`taking over ${key}`, () =>
      this.client
        .if(key, 'Mod', '==', Number(kv.mod_revision))
        .then(this.client.put(key).value(value).lease(session.id))
        .commit(),
    );
    if (!taken.succeeded) return this.register();
    if (lease !== '0') await this.client.leaseClient.leaseRevoke({ ID: lease }).catch(() => {});
    return this.#done();
  }

  async #done(): Promise<Registered> {
    this.#registered = true;
    if (!this.#noted) return { ok: true };
    this.#noted = false;
    await etcdCall(`a delete of ${this.keys.conflict(this.#record.node)}`, () =>
      this.client
        .if(this.keys.conflict(this.#record.node), 'Create', '>', 0)
        .then(this.client.delete().key(this.keys.conflict(this.#record.node)))
        .commit(),
    ).catch(() => {});
    return { ok: true };
  }

  /** Says at `conflicts/<node>`, on our lease, that this agent stays out, and why. */
  async #conflict(other: NodeRegistration | null, reason: string): Promise<Registered> {
    this.#registered = false;
    this.#noted = true;
    const session = this.#session!;
    const record: NodeRegistration = { ...this.#record, problem: reason };
    await etcdCall(`a write of ${this.keys.conflict(this.#record.node)}`, () =>
      this.client
        .put(this.keys.conflict(this.#record.node))
        .value(JSON.stringify(record))
        .lease(session.id)
        .exec(),
    );
    return { ok: false, other, reason };
  }

  /** True when someone refreshes `lease` within the probe time (its TTL goes back up). */
  async #leaseKeptAlive(lease: string): Promise<boolean> {
    if (lease === '0') return false;
    const ttl = async () =>
      Number((await this.client.leaseClient.leaseTimeToLive({ ID: lease })).TTL ?? -1);
    let last = await ttl();
    const deadline = Date.now() + Math.min(LIVENESS_PROBE_MS, (this.ttl * 1000) / 2 + 1000);
    while (last > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      const now = await ttl();
      if (now > last) return true;
      last = now;
    }
    return false;
  }

  /**
   * Records why this agent cannot take part right now (or null once it can), for `sluicectl
   * nodes` and `status`. One write per change.
   */
  async setProblem(problem: string | null): Promise<void> {
    const current = this.#record.problem ?? null;
    if (current === problem) return;
    const { problem: _old, ...rest } = this.#record;
    this.#record = problem === null ? rest : { ...rest, problem };
    const session = this.#session;
    if (!this.#registered || !session?.alive) return;
    const key = this.key;
    await etcdCall(`a write of ${key}`, () =>
      this.client
        .if(key, 'Lease', '==', session.id)
        .then(this.client.put(key).value(JSON.stringify(this.#record)).lease(session.id))
        .commit(),
    );
  }

  /** Stops refreshing the lease: the registration goes when its TTL runs out. */
  close(): void {
    this.#registered = false;
    this.#session?.close();
    this.#session = null;
  }

  /**
   * Removes the registration (and a conflict note) now, by revoking its lease: for an agent that
   * stops. Best effort: if etcd cannot be reached, the lease runs out by itself.
   */
  async deregister(): Promise<void> {
    this.#registered = false;
    const session = this.#session;
    this.#session = null;
    await session?.revoke().catch(() => {});
  }
}
