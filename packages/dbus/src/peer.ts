/// <reference path="./dbus-next-internals.d.ts" />
/**
 * Peer-to-peer D-Bus: a connection straight to a server that is not a bus daemon, such as the
 * private socket rpm-ostreed opens for each transaction. There is no `Hello` and no routing: the
 * peer receives every call and every signal it sends arrives here. dbus-next only speaks to bus
 * daemons, so this drives its raw connection (handshake and wire format) directly.
 */

import { SluiceError, throwIfAborted } from '@sluice/core';
import { Message, MessageType } from 'dbus-next';
import createConnection, { type RawConnection } from 'dbus-next/lib/connection.js';
import { abortedError, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from './bus.js';

/** What a method call on a peer needs: no destination, since there is only the one peer. */
export interface PeerCall {
  path: string;
  interface: string;
  member: string;
  signature?: string;
  body?: unknown[];
}

/**
 * One connection to a D-Bus peer. Open it with {@link PeerConnection.connect}, make calls with
 * {@link PeerConnection.call}, listen to signals with {@link PeerConnection.onSignal}, and
 * {@link PeerConnection.close} it. Only `unix:path=` addresses are supported.
 */
export class PeerConnection {
  #serial = 1;
  readonly #replies = new Map<number, (msg: Message) => void>();
  readonly #signalListeners = new Set<(msg: Message) => void>();
  readonly #closeListeners = new Set<(why: string) => void>();
  #closed: string | null = null;

  private constructor(
    private readonly conn: RawConnection,
    /** The address connected to, for messages. */
    readonly address: string,
  ) {
    conn.on('message', (msg) => {
      if (msg.type === MessageType.METHOD_RETURN || msg.type === MessageType.ERROR) {
        const handler = this.#replies.get(Number(msg.replySerial));
        this.#replies.delete(Number(msg.replySerial));
        handler?.(msg);
      } else if (msg.type === MessageType.SIGNAL) {
        for (const listener of this.#signalListeners) listener(msg);
      }
    });
    const onGone = (why: string) => {
      if (this.#closed !== null) return;
      this.#closed = why;
      for (const listener of this.#closeListeners) listener(why);
    };
    conn.on('error', (error) => onGone(error instanceof Error ? error.message : String(error)));
    conn.stream.once('close', () => onGone('the peer closed the connection'));
  }

  /**
   * Connects and authenticates (EXTERNAL, as the process's own user).
   *
   * @throws SluiceError `dbus-unavailable` when the address is not a `unix:path=` address, the
   *   socket cannot be reached or the handshake does not finish within `timeoutMs`; `aborted`
   *   when `signal` fires first.
   */
  static async connect(
    address: string,
    signal?: AbortSignal,
    timeoutMs = DEFAULT_CONNECT_TIMEOUT_MS,
  ): Promise<PeerConnection> {
    throwIfAborted(signal);
    const path = /^unix:path=([^,;]+)/.exec(address)?.[1];
    if (path === undefined) {
      throw new SluiceError(
        'dbus-unavailable',
        `cannot connect to the D-Bus peer at ${address}: only unix:path= addresses are supported`,
        address,
      );
    }
    const conn = createConnection({ busAddress: `unix:path=${path}` });
    return new Promise<PeerConnection>((resolve, reject) => {
      const fail = (why: string) => {
        cleanup();
        conn.stream.destroy();
        reject(
          why === 'aborted'
            ? abortedError(signal)
            : new SluiceError(
                'dbus-unavailable',
                `cannot connect to the D-Bus peer at ${address}: ${why}`,
                address,
              ),
        );
      };
      const onError = (error: unknown) =>
        fail(error instanceof Error ? error.message : String(error));
      const onClose = () => fail('the peer closed the connection during the handshake');
      const onAbort = () => fail('aborted');
      const timer = setTimeout(() => fail(`no handshake within ${timeoutMs} ms`), timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        conn.off('error', onError);
        conn.stream.off('close', onClose);
        signal?.removeEventListener('abort', onAbort);
      };
      conn.on('error', onError);
      conn.stream.on('close', onClose);
      signal?.addEventListener('abort', onAbort, { once: true });
      conn.once('connect', () => {
        cleanup();
        resolve(new PeerConnection(conn, address));
      });
    });
  }

  /** Calls `listener` for every signal the peer sends. Returns a function that removes it. */
  onSignal(listener: (msg: Message) => void): () => void {
    this.#signalListeners.add(listener);
    return () => this.#signalListeners.delete(listener);
  }

  /** Calls `listener` once the connection is gone, with why. Returns a function that removes it. */
  onClose(listener: (why: string) => void): () => void {
    if (this.#closed !== null) {
      const why = this.#closed;
      queueMicrotask(() => listener(why));
      return () => {};
    }
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /**
   * Calls a method on the peer and returns the answer.
   *
   * @throws SluiceError `dbus-unavailable` when the peer answers with an error (named in the
   *   message), does not answer within `timeoutMs` or the connection closes; `aborted` when
   *   `signal` fires first.
   */
  call(
    call: PeerCall,
    options: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<Message> {
    const { signal } = options;
    const timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const what = `${call.path} ${call.interface}.${call.member} on ${this.address}`;
    throwIfAborted(signal);
    if (this.#closed !== null) {
      return Promise.reject(
        new SluiceError('dbus-unavailable', `${what}: ${this.#closed}`, this.address),
      );
    }
    const serial = this.#serial++;
    const message = new Message({
      type: MessageType.METHOD_CALL,
      serial,
      path: call.path,
      interface: call.interface,
      member: call.member,
      signature: call.signature ?? '',
      body: call.body ?? [],
    });
    return new Promise<Message>((resolve, reject) => {
      const finish = (outcome: () => void) => {
        clearTimeout(timer);
        stopClose();
        signal?.removeEventListener('abort', onAbort);
        this.#replies.delete(serial);
        outcome();
      };
      const onAbort = () => finish(() => reject(abortedError(signal)));
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new SluiceError(
                'dbus-unavailable',
                `${what}: no answer within ${timeoutMs} ms`,
                this.address,
              ),
            ),
          ),
        timeoutMs,
      );
      const stopClose = this.onClose((why) =>
        finish(() =>
          reject(new SluiceError('dbus-unavailable', `${what}: no answer, ${why}`, this.address)),
        ),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#replies.set(serial, (reply) =>
        finish(() => {
          if (reply.type === MessageType.ERROR) {
            const text = typeof reply.body[0] === 'string' ? `: ${reply.body[0]}` : '';
            reject(
              new SluiceError(
                'dbus-unavailable',
                `${what} failed: ${reply.errorName}${text}`,
                this.address,
              ),
            );
          } else {
            resolve(reply);
          }
        }),
      );
      try {
        this.conn.message(message);
      } catch (error) {
        finish(() =>
          reject(
            new SluiceError(
              'dbus-unavailable',
              `${what}: cannot send: ${error instanceof Error ? error.message : String(error)}`,
              this.address,
            ),
          ),
        );
      }
    });
  }

  /** Closes the connection. Safe to call more than once. */
  close(): void {
    this.conn.stream.destroy();
  }
}
