/**
 * In-memory fakes of the agent's ports (`SlotLock`, `GroupSettings`), for unit tests of the agent
 * runtime: what the agent asked for is recorded in `calls`, in order, and each answer can be
 * steered (grant now or later, refuse a confirmation, fail a call). They hold no safety logic of
 * their own: safety is tested against real etcd in test/.
 */
import {
  type ConfirmOptions,
  type Grant,
  type GroupSettings,
  type NodeState,
  type QueueRecord,
  type SlotLock,
  type SlotRecovery,
  type SlotRequest,
  SluiceError,
  type WindowSpec,
} from '@sluice/core';

/** A slot lock that grants on demand and records every call. */
export class FakeSlotLock implements SlotLock {
  /** Every call, in order: `acquire`, `confirm:rebooting`, `release:released`, `leave:release`... */
  readonly calls: string[] = [];
  /** What `recover()` answers. */
  recovery: SlotRecovery = { own: null, lost: null, leftAlone: null };
  /** Grant at once when asked (default); otherwise `grant()` grants the waiting request. */
  autoGrant = true;
  /** The next confirmations fail: `refused` (the slot is gone) or an error a retry may fix. */
  confirmFails: 'refused' | Error | null = null;
  /** The next `acquire()` fails with this (an etcd that does not answer), once. */
  acquireFails: Error | null = null;
  #revision = 100;
  #waiting: (() => void) | null = null;

  constructor(readonly node = 'node-1') {}

  #record(state: NodeState, req: SlotRequest = {}): QueueRecord {
    const now = new Date().toISOString();
    return {
      v: 1,
      node: this.node,
      hostname: this.node,
      state,
      since: now,
      enqueuedAt: now,
      reason: req.reason ?? '',
      ...(req.bootId ? { bootId: req.bootId } : {}),
    };
  }

  async recover(): Promise<SlotRecovery> {
    this.calls.push('recover');
    return this.recovery;
  }

  acquire(request: SlotRequest, signal?: AbortSignal): Promise<Grant> {
    this.calls.push('acquire');
    const failure = this.acquireFails;
    this.acquireFails = null;
    if (failure) return Promise.reject(failure);
    const grant = (): Grant => ({
      node: this.node,
      revision: ++this.#revision,
      createRevision: 7,
      record: this.#record('holding', request),
    });
    if (this.autoGrant) return Promise.resolve(grant());
    return new Promise((resolve, reject) => {
      this.#waiting = () => resolve(grant());
      signal?.addEventListener('abort', () =>
        reject(new SluiceError('aborted', 'stopped waiting for a slot')),
      );
    });
  }

  /** Grants the slot a waiting `acquire()` asked for. */
  grant(): void {
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.();
  }

  async confirm(
    grant: Grant,
    state: NodeState,
    patch: Partial<QueueRecord> = {},
    options: ConfirmOptions = {},
  ): Promise<Grant> {
    this.calls.push(`confirm:${state}${options.clearRequest ? '+clear-request' : ''}`);
    const fails = this.confirmFails;
    if (fails === 'refused') {
      throw new SluiceError('refused', 'the queue key is gone: this node no longer holds its slot');
    }
    if (fails) throw fails;
    return { ...grant, record: { ...grant.record, ...patch, state } };
  }

  async release(_grant: Grant | null, outcome: 'released' | 'abandoned'): Promise<boolean> {
    this.calls.push(`release:${outcome}`);
    return true;
  }

  async leave(ifAdmitted: 'keep' | 'release'): Promise<'left' | 'held' | 'released'> {
    this.calls.push(`leave:${ifAdmitted}`);
    return 'left';
  }

  position(): number | null {
    return this.#waiting ? 0 : null;
  }

  close(): void {}
}

/** Group settings held in memory: a window spec and a reboot request that tests set. */
export class FakeGroupSettings implements GroupSettings {
  readonly calls: string[] = [];
  #window: WindowSpec | null | 'unknown' = null;
  #request: string | null = null;
  #onWindow: (() => void) | null = null;
  #onRequest: ((request: string | null) => void) | null = null;

  async window(): Promise<WindowSpec | null | 'unknown'> {
    return this.#window;
  }

  /** Sets the group's window, as an operator would, and tells a follower. */
  setWindow(spec: WindowSpec | null | 'unknown'): void {
    this.#window = spec;
    this.#onWindow?.();
  }

  followWindow(on: boolean, onChange: () => void): void {
    this.#onWindow = on ? onChange : null;
  }

  async followRequest(onChange: (request: string | null) => void): Promise<void> {
    this.#onRequest = onChange;
    onChange(this.#request);
  }

  /** Sets (or, with null, withdraws) this node's reboot request, and tells the follower. */
  setRequest(value: string | null): void {
    this.#request = value;
    this.#onRequest?.(value);
  }

  async clearRequest(): Promise<void> {
    this.calls.push('clear-request');
    this.setRequest(null);
  }

  async close(): Promise<void> {
    this.#onWindow = null;
    this.#onRequest = null;
  }
}
