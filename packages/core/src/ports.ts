/**
 * The ports the agent runs through: what it needs of the reboot semaphore (`SlotLock`), of the
 * group's shared settings (`GroupSettings`) and of its registration (`Registration`). They are
 * plain interfaces, so the agent sees no etcd client: `@sluice/etcd` implements them on etcd, a
 * strategy without a lock passes none, and `@sluice/testkit` has fakes for unit tests. As
 * etcd's `NewMutex` is given a `Session`, the agent is given these.
 *
 * Every call that may block takes an AbortSignal, last.
 */
import type { NodeRegistration, NodeState, QueueRecord } from './records.js';
import type { Decision } from './snapshot.js';
import type { WindowSpec } from './window.js';

/** Why the node wants a slot; stored in its queue record. */
export interface SlotRequest {
  reason?: string;
  fromVersion?: string;
  toVersion?: string;
  manual?: boolean;
  bootId?: string;
  /** How long the slot is expected to take (ms): admitted only if it fits before the window closes. */
  expectedSlotMs?: number;
}

/** A granted slot. `revision` is the fencing token: the revision of the admission txn. */
export interface Grant {
  node: string;
  revision: number;
  createRevision: number;
  record: QueueRecord;
}

/** What the node has in its group when its agent starts (see `SlotLock.recover`). */
export interface SlotRecovery {
  /** The node's own queue key, re-attached to this process, or null. */
  own: { record: QueueRecord | null; holding: boolean; grant: Grant | null } | null;
  /**
   * A lost marker of this node's id: `cleared` when it was this agent's and is gone now
   * (history: returned), `foreign` when another agent with this id wrote it.
   */
  lost: { key: string; outcome: 'cleared' | 'foreign' } | null;
  /**
   * Why the node's own key is left alone: written by another agent with this node id, or a
   * manual lock (`sluicectl lock`), which is the operator's. Null when it was re-attached.
   */
  leftAlone: { key: string; why: 'foreign' | 'manual'; hostname: string; bootId: string } | null;
}

/** The reboot semaphore, as the agent uses it. */
export interface SlotLock {
  /** This node's id in the group. */
  readonly node: string;
  /**
   * At start: the node's own key, re-attached to this process (its place and slot kept), after
   * clearing the node's own lost marker if it has one.
   */
  recover(bootId: string, signal?: AbortSignal): Promise<SlotRecovery>;
  /** Joins the queue (or keeps the node's place) and waits for a slot. */
  acquire(request: SlotRequest, signal?: AbortSignal): Promise<Grant>;
  /**
   * How long this node's slots took, admission to release: the median of its last released
   * slots in the group's history, in ms; null when it has none.
   */
  pastSlotMs?(signal?: AbortSignal): Promise<number | null>;
  /**
   * Rewrites the holder's record with `state`, guarded on the slot still being this one (the
   * fencing token). Rejects with a `refused` SluiceError when it is not: the slot is gone. With
   * `clearRequest`, the same write deletes the node's reboot request (the reboot it confirms
   * serves it), so the request goes exactly when the slot is proven and stays when it is not.
   */
  confirm(
    grant: Grant,
    state: NodeState,
    patch?: Partial<QueueRecord>,
    options?: ConfirmOptions,
  ): Promise<Grant>;
  /** Gives the slot back (`released` after a reboot, `abandoned` otherwise). */
  release(
    grant: Grant | null,
    outcome: 'released' | 'abandoned',
    signal?: AbortSignal,
  ): Promise<boolean>;
  /** Leaves the queue; a slot granted meanwhile is kept, or given back with `release`. */
  leave(
    ifAdmitted: 'keep' | 'release',
    signal?: AbortSignal,
  ): Promise<'left' | 'held' | 'released'>;
  /** Places ahead of the node while it waits (0 = next), from a local view; null otherwise. */
  position(): number | null;
  /** Stops keep-alives without giving anything up: keys live on until their leases run out. */
  close(): void;
}

/** How `SlotLock.confirm` writes: whether it also deletes the reboot request; its abort signal. */
export interface ConfirmOptions {
  clearRequest?: boolean;
  signal?: AbortSignal;
}

/** Where the agent hears the group's decisions while it waits (for logs and metrics). */
export type DecisionListener = (decision: Decision, source: 'etcd' | 'mirror') => void;

/** The group's shared settings an agent follows: the window and this node's reboot request. */
export interface GroupSettings {
  /** The group's window: a spec, null when none is set, `unknown` when it cannot be read. */
  window(signal?: AbortSignal): Promise<WindowSpec | null | 'unknown'>;
  /**
   * Follows the window while `on` (an update is pending), calling `onChange` after each change;
   * idle agents follow nothing.
   */
  followWindow(on: boolean, onChange: () => void): void;
  /** Follows this node's reboot request: its raw value, or null when there is none. */
  followRequest(onChange: (request: string | null) => void, signal?: AbortSignal): Promise<void>;
  /** Deletes this node's reboot request (the reboot about to happen serves it). */
  clearRequest(signal?: AbortSignal): Promise<void>;
  /** Stops following. */
  close(): Promise<void>;
}

/** The outcome of `Registration.register()`. */
export type Registered =
  | { ok: true }
  /** Another live agent has this node id; `other` is its registration (null if unreadable). */
  | { ok: false; other: NodeRegistration | null; reason: string };

/** This agent's registration in its group (one node, one agent). */
export interface Registration {
  /** The key it registers at, for messages. */
  readonly key: string;
  /** Registers, or says which other live agent holds the node id. */
  register(): Promise<Registered>;
  /** Aborted when the registration's lease is lost; null before the first registration. */
  readonly lost: AbortSignal | null;
  /** Records why the agent cannot take part right now (null once it can). */
  setProblem(problem: string | null): Promise<void>;
  /** Removes the registration (the agent stops). */
  deregister(): Promise<void>;
}

/** The newest history record of a group, as notifications need it. */
export interface NewestRecord {
  /** Its mod revision: the same for every agent that reads it, so it can name an event. */
  modRevision: number;
  /** Its raw value. */
  value: string;
}

/**
 * Where notifications are claimed, so that each event is sent once fleet-wide, and where an
 * agent learns that a rollout is over. The etcd implementation is `EtcdNotifyStore`.
 */
export interface NotifyStore {
  /**
   * Claims the notification `id` for this agent: true when this call created the claim (it lives
   * `ttlSeconds`), false when another agent holds it.
   */
  claim(id: string, value: string, ttlSeconds: number): Promise<boolean>;
  /**
   * Whether nobody waits or holds a slot in the group, and the group's newest history record
   * (null when there is none).
   */
  drained(): Promise<{ drained: boolean; newest: NewestRecord | null }>;
}
