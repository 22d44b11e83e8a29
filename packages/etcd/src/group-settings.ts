/**
 * The group's shared settings an agent follows, on etcd: the implementation of `GroupSettings`.
 * The group's window is two keys, `windows` and `blackouts`, read and followed together. They are
 * mirrored only while an update is pending (idle agents watch nothing but their
 * request key); while the mirror is in step with etcd it answers without a read. Both mirrors check
 * themselves against etcd every `VERIFY_MS` (one key read), so a watch that went silent after a
 * partition delays a window change or a request by that much at most.
 */
import {
  type GroupKeys,
  type GroupSettings,
  groupWindow,
  throwIfAborted,
  type WindowSpec,
} from '@sluice/core';
import type { Etcd3 } from 'etcd3';
import { Backoff } from './backoff.js';
import { etcdCall } from './errors.js';
import { Mirror } from './mirror.js';

/** How often the mirrors check themselves against etcd (jittered). */
export const VERIFY_MS = 15_000;

/** What `EtcdGroupSettings` reports besides its answers. */
export interface GroupSettingsEvents {
  /** The window key holds an invalid spec (read or mirrored): nobody reboots until it is fixed. */
  onInvalidWindow?: (message: string) => void;
  /** The window could not be read from etcd. */
  onReadError?: (error: unknown) => void;
  /** The window mirror could not be started (it is tried again with back-off while followed). */
  onFollowError?: (error: unknown) => void;
}

/**
 * The group's `windows` and `blackouts` as stored (undefined: absent), both at one revision in
 * one round trip: what the agents and `sluicectl windows` parse with `groupWindow()`.
 */
export async function readWindowKeys(
  client: Etcd3,
  keys: GroupKeys,
): Promise<{ windows: string | undefined; blackouts: string | undefined }> {
  const { windows, blackouts } = keys;
  const res = await etcdCall(`a read of ${windows} and ${blackouts}`, () =>
    client.kv.txn({
      compare: [],
      success: [windows, blackouts].map((key) => ({ request_range: { key: Buffer.from(key) } })),
    }),
  );
  const value = (i: number) => res.responses[i]?.response_range?.kvs[0]?.value.toString();
  return { windows: value(0), blackouts: value(1) };
}

/** A node's view of its group's window and of its own reboot request key. */
export class EtcdGroupSettings implements GroupSettings {
  /** The mirrors of the window's two keys, `windows` and `blackouts`, while followed. */
  #window: Mirror[] | null = null;
  #starting = false;
  /** The follower while the window is followed, and the pending retry of a failed start. */
  #following: (() => void) | null = null;
  #retry: NodeJS.Timeout | undefined;
  readonly #followBackoff = new Backoff({ initialMs: 500, maxMs: 10_000 });
  #request: Mirror | null = null;
  #closed = false;

  constructor(
    private readonly client: Etcd3,
    readonly keys: GroupKeys,
    readonly node: string,
    private readonly events: GroupSettingsEvents = {},
  ) {}

  async window(signal?: AbortSignal): Promise<WindowSpec | null | 'unknown'> {
    throwIfAborted(signal);
    const mirrors = this.#window;
    const { windows, blackouts } = this.keys;
    // While the mirrors are in step with etcd they are as good as a read; otherwise read etcd.
    if (mirrors?.every((m) => m.connected)) {
      const [w, b] = mirrors;
      return this.#parse(w?.get(windows)?.value, b?.get(blackouts)?.value);
    }
    try {
      const read = await readWindowKeys(this.client, this.keys);
      return this.#parse(read.windows, read.blackouts);
    } catch (error) {
      this.events.onReadError?.(error);
      return 'unknown';
    }
  }

  #parse(
    windows: string | undefined,
    blackouts: string | undefined,
  ): WindowSpec | null | 'unknown' {
    const parsed = groupWindow(this.keys, windows, blackouts);
    if (parsed.ok) return parsed.value;
    this.events.onInvalidWindow?.(parsed.error.message);
    return 'unknown';
  }

  followWindow(on: boolean, onChange: () => void): void {
    if (!on || this.#closed) {
      const mirrors = this.#window ?? [];
      this.#window = null;
      this.#following = null;
      clearTimeout(this.#retry);
      for (const m of mirrors) void m.close();
      return;
    }
    this.#following = onChange;
    if (this.#window || this.#starting || this.#retry) return;
    this.#startFollow();
  }

  /**
   * Starts the window mirror; when that fails (etcd out of reach), tries again with back-off for
   * as long as the window is followed: a waiter must not depend on its next transition to hear
   * of a window that changed meanwhile.
   */
  #startFollow(): void {
    this.#retry = undefined;
    if (this.#closed || !this.#following) return;
    this.#starting = true;
    const started = [this.keys.windows, this.keys.blackouts].map((key) =>
      Mirror.start(this.client, { key }, {}, { verifyMs: VERIFY_MS }),
    );
    Promise.all(started).then(
      (mirrors) => {
        this.#starting = false;
        this.#followBackoff.reset();
        if (this.#closed || !this.#following) {
          for (const m of mirrors) void m.close();
          return;
        }
        this.#window = mirrors;
        for (const m of mirrors) m.onChange(() => this.#following?.());
        // The window may have changed while the mirrors could not start.
        this.#following();
      },
      (error: unknown) => {
        // The one that did start is not kept: both are started again together.
        for (const p of started)
          void p.then(
            (m) => m.close(),
            () => {},
          );
        this.#starting = false;
        this.events.onFollowError?.(error);
        if (this.#closed || !this.#following) return;
        this.#retry = setTimeout(() => this.#startFollow(), this.#followBackoff.next());
      },
    );
  }

  /**
   * Checks the followed window against etcd now, rather than at the next self-check: for a hint
   * from another watch (the semaphore's mirror of the group saw the window shut). When the
   * mirror missed the change it reads again, which calls the follower.
   */
  recheckWindow(): void {
    for (const m of this.#window ?? []) {
      void m.verify().catch((error: unknown) => this.events.onReadError?.(error));
    }
  }

  async followRequest(
    onChange: (request: string | null) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    throwIfAborted(signal);
    const key = this.keys.request(this.node);
    const mirror = await Mirror.start(this.client, { key }, {}, { verifyMs: VERIFY_MS });
    await this.#request?.close();
    this.#request = mirror;
    const tell = () => onChange(mirror.get(key)?.value ?? null);
    mirror.onChange(tell);
    tell();
  }

  async clearRequest(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const key = this.keys.request(this.node);
    await etcdCall(`a delete of ${key}`, () => this.client.delete().key(key).exec());
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    const mirrors = [...(this.#window ?? []), this.#request];
    this.#window = null;
    this.#request = null;
    await Promise.all(mirrors.map((m) => m?.close()));
  }
}
