/**
 * The group's shared settings an agent follows, on etcd: the implementation of `GroupSettings`.
 * The window key is mirrored only while an update is pending (idle agents watch nothing but their
 * request key); while the mirror is in step with etcd it answers without a read. Both mirrors check
 * themselves against etcd every `VERIFY_MS` (one key read), so a watch that went silent after a
 * partition delays a window change or a request by that much at most.
 */
import {
  type GroupKeys,
  type GroupSettings,
  parseWindowSpec,
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

/** A node's view of its group's window and of its own reboot request key. */
export class EtcdGroupSettings implements GroupSettings {
  #window: Mirror | null = null;
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
    const mirror = this.#window;
    // While the mirror is in step with etcd it is as good as a read; otherwise read etcd.
    if (mirror?.connected) return this.#parse(mirror.get(this.keys.windows)?.value);
    try {
      const text = await etcdCall(`a read of ${this.keys.windows}`, () =>
        this.client.get(this.keys.windows).string(),
      );
      return this.#parse(text ?? undefined);
    } catch (error) {
      this.events.onReadError?.(error);
      return 'unknown';
    }
  }

  #parse(text: string | undefined): WindowSpec | null | 'unknown' {
    if (text === undefined) return null;
    const parsed = parseWindowSpec(text, `etcd key ${this.keys.windows}`);
    if (parsed.ok) return parsed.value;
    this.events.onInvalidWindow?.(parsed.error.message);
    return 'unknown';
  }

  followWindow(on: boolean, onChange: () => void): void {
    if (!on || this.#closed) {
      const mirror = this.#window;
      this.#window = null;
      this.#following = null;
      clearTimeout(this.#retry);
      void mirror?.close();
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
    Mirror.start(this.client, { key: this.keys.windows }, {}, { verifyMs: VERIFY_MS }).then(
      (mirror) => {
        this.#starting = false;
        this.#followBackoff.reset();
        if (this.#closed || !this.#following) {
          void mirror.close();
          return;
        }
        this.#window = mirror;
        mirror.onChange(() => this.#following?.());
        // The window may have changed while the mirror could not start.
        this.#following();
      },
      (error: unknown) => {
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
    void this.#window?.verify().catch((error: unknown) => this.events.onReadError?.(error));
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
    const mirrors = [this.#window, this.#request];
    this.#window = null;
    this.#request = null;
    await Promise.all(mirrors.map((m) => m?.close()));
  }
}
