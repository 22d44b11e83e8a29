/**
 * Connecting to a D-Bus daemon and calling methods on it, with the gaps in dbus-next filled in:
 * a connection that closes is reported, calls that will never be answered fail instead of
 * hanging, and every failure is a SluiceError.
 */

import type { Duplex } from 'node:stream';
import { isSluiceError, SluiceError, throwIfAborted } from '@sluice/core';
import { TaskCancelledError, TimeoutStrategy, timeout } from 'cockatiel';
import { type Message, type MessageBus, MessageType, sessionBus, systemBus } from 'dbus-next';

/**
 * Which D-Bus daemon to talk to: `'system'` for the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else
 * `unix:path=/var/run/dbus/system_bus_socket`), or a D-Bus address such as
 * `unix:path=/run/dbus/system_bus_socket`. `unix:abstract=` addresses are not supported.
 */
export type BusAddress = 'system' | (string & {});

/** How long connecting (socket, authentication and `Hello`) may take by default, in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** How long a method call may wait for its answer by default, in milliseconds. */
export const DEFAULT_CALL_TIMEOUT_MS = 5_000;

/** The parts of dbus-next's MessageBus that its type declarations leave out. */
interface BusInternals {
  _connection: { stream: Duplex };
}

const streamOf = (bus: MessageBus): Duplex => (bus as unknown as BusInternals)._connection.stream;

/** The last `error` event of each bus, to explain a connection that closed. */
const lastErrors = new WeakMap<MessageBus, unknown>();

const describe = (address: BusAddress): string =>
  address === 'system'
    ? `the system bus (${process.env.DBUS_SYSTEM_BUS_ADDRESS ?? 'unix:path=/var/run/dbus/system_bus_socket'})`
    : address;

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : String(error);

/** An error answer from a D-Bus peer, as dbus-next raises it. */
interface DbusErrorReply {
  type: string;
  text: string;
}

const isDbusErrorReply = (error: unknown): error is DbusErrorReply =>
  error instanceof Error &&
  error.name === 'DBusError' &&
  typeof Reflect.get(error, 'type') === 'string';

/** The SluiceError for an AbortSignal that fired. */
export function abortedError(signal: AbortSignal | undefined): SluiceError {
  return new SluiceError('aborted', 'operation cancelled', undefined, { cause: signal?.reason });
}

/**
 * Opens a connection to a D-Bus daemon and waits until the daemon has said hello.
 *
 * The returned bus always has an `error` listener, so dbus-next cannot crash the process with an
 * unhandled `error` event; watch for a lost connection with {@link onBusClosed} and close it with
 * {@link closeBus}. Use this for one-off calls or to build a client; {@link UpdateEngineClient}
 * and {@link LogindClient} call it for you.
 *
 * @throws SluiceError `invalid-config` when the address cannot be parsed, `dbus-unavailable` when
 *   the daemon cannot be reached or does not finish the handshake within `timeoutMs`, `aborted`
 *   when `signal` fires first.
 */
export async function connectBus(
  address: BusAddress,
  signal?: AbortSignal,
  timeoutMs: number = DEFAULT_CONNECT_TIMEOUT_MS,
): Promise<MessageBus> {
  throwIfAborted(signal);
  if (address.startsWith('unix:abstract=')) {
    throw new SluiceError(
      'invalid-config',
      `D-Bus address ${address}: unix:abstract= sockets are not supported, use unix:path=`,
      address,
    );
  }
  let bus: MessageBus;
  try {
    bus = address === 'system' ? systemBus() : sessionBus({ busAddress: address });
  } catch (error) {
    throw new SluiceError(
      'invalid-config',
      `D-Bus address ${address} is not usable: ${messageOf(error)}`,
      address,
      { cause: error },
    );
  }
  bus.on('error', (error: unknown) => lastErrors.set(bus, error));

  return new Promise<MessageBus>((resolve, reject) => {
    const where = address === 'system' ? 'DBUS_SYSTEM_BUS_ADDRESS' : address;
    const fail = (error: SluiceError) => {
      cleanup();
      void closeBus(bus);
      reject(error);
    };
    const onError = (error: unknown) =>
      fail(
        new SluiceError(
          'dbus-unavailable',
          `cannot connect to the D-Bus daemon at ${describe(address)}: ${messageOf(error)}`,
          where,
          { cause: error },
        ),
      );
    const onClose = () =>
      fail(
        new SluiceError(
          'dbus-unavailable',
          `the D-Bus daemon at ${describe(address)} closed the connection during the handshake`,
          where,
        ),
      );
    const onAbort = () => fail(abortedError(signal));
    const onConnect = () => {
      cleanup();
      resolve(bus);
    };
    const timer = setTimeout(
      () =>
        fail(
          new SluiceError(
            'dbus-unavailable',
            `the D-Bus daemon at ${describe(address)} did not complete the handshake within ${timeoutMs} ms`,
            where,
          ),
        ),
      timeoutMs,
    );
    const stream = streamOf(bus);
    const cleanup = () => {
      clearTimeout(timer);
      bus.off('connect', onConnect);
      bus.off('error', onError);
      stream.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    bus.on('connect', onConnect);
    bus.on('error', onError);
    stream.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Closes a bus opened by {@link connectBus} and resolves once its socket is closed. Safe to call
 * more than once and on a bus whose daemon has gone away. Unlike dbus-next's `disconnect()`, which
 * only half-closes the socket, this releases it at once.
 */
export async function closeBus(bus: MessageBus): Promise<void> {
  const stream = streamOf(bus);
  if (stream.closed) {
    return;
  }
  const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  if (!stream.destroyed) {
    bus.disconnect();
    stream.destroy();
  }
  await closed;
}

/**
 * Calls `listener` once when the bus connection closes, whoever closed it: the daemon exiting,
 * {@link closeBus}, or a network error. The error passed is a `dbus-unavailable` SluiceError that
 * says why, when known. Returns a function that removes the listener.
 */
export function onBusClosed(bus: MessageBus, listener: (error: SluiceError) => void): () => void {
  const stream = streamOf(bus);
  const onClose = () => {
    const last = lastErrors.get(bus);
    const why = last === undefined ? '' : `: ${messageOf(last)}`;
    listener(
      new SluiceError('dbus-unavailable', `the D-Bus connection closed${why}`, undefined, {
        cause: last,
      }),
    );
  };
  if (stream.closed) {
    queueMicrotask(onClose);
    return () => {};
  }
  stream.once('close', onClose);
  return () => stream.off('close', onClose);
}

/** Options for {@link callMethod}. */
export interface CallOptions {
  /** Cancels the call; it then fails with a SluiceError of kind `aborted`. */
  signal?: AbortSignal;
  /** How long to wait for the answer. Defaults to {@link DEFAULT_CALL_TIMEOUT_MS}. */
  timeoutMs?: number;
  /**
   * Called synchronously when the answer arrives, before any message received after it is
   * handled. Use it to apply a reply in order with the signals around it.
   */
  onReply?: (reply: Message) => void;
}

/**
 * Sends a method call and waits for its answer, which it returns.
 *
 * @throws SluiceError `dbus-unavailable` when the peer answers with a D-Bus error (the message
 *   names it), when there is no answer within the timeout, or when the connection closes first;
 *   `aborted` when `options.signal` fires first.
 */
export async function callMethod(
  bus: MessageBus,
  message: Message,
  options: CallOptions = {},
): Promise<Message> {
  const { signal, onReply } = options;
  const timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const what = `${message.destination} ${message.path} ${message.interface}.${message.member}`;
  throwIfAborted(signal);

  let stopWatching = () => {};
  const lost = new Promise<never>((_, reject) => {
    stopWatching = onBusClosed(bus, (closed) =>
      reject(
        new SluiceError(
          'dbus-unavailable',
          `${what}: no answer, ${closed.message}`,
          message.destination,
          { cause: closed },
        ),
      ),
    );
  });
  lost.catch(() => {});

  let onMessage: ((incoming: Message) => void) | undefined;
  try {
    // dbus-next answers null only for calls flagged NO_REPLY_EXPECTED, which this never sends.
    return (await timeout(timeoutMs, TimeoutStrategy.Aggressive).execute(() => {
      const answer = bus.call(message);
      if (onReply !== undefined) {
        const serial = message.serial;
        onMessage = (incoming: Message) => {
          if (
            incoming.type === MessageType.METHOD_RETURN &&
            Number(incoming.replySerial) === serial
          ) {
            onReply(incoming);
          }
        };
        bus.on('message', onMessage);
      }
      return Promise.race([answer, lost]);
    }, signal))!;
  } catch (error) {
    if (signal?.aborted) {
      throw abortedError(signal);
    }
    if (error instanceof TaskCancelledError) {
      throw new SluiceError(
        'dbus-unavailable',
        `${what}: no answer within ${timeoutMs} ms`,
        message.destination,
        { cause: error },
      );
    }
    if (isSluiceError(error)) {
      throw error;
    }
    const why = isDbusErrorReply(error) ? `${error.type}: ${error.text}` : messageOf(error);
    throw new SluiceError('dbus-unavailable', `${what} failed: ${why}`, message.destination, {
      cause: error,
    });
  } finally {
    stopWatching();
    if (onMessage !== undefined) {
      bus.off('message', onMessage);
    }
  }
}
