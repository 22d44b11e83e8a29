/**
 * Types for the parts of dbus-next that it does not declare: its raw connection, used for
 * peer-to-peer D-Bus (no bus daemon, so no `Hello`), and its message wire format, used by the
 * test kit to play a peer-to-peer server.
 */
declare module 'dbus-next/lib/connection.js' {
  import type { EventEmitter } from 'node:events';
  import type { Duplex } from 'node:stream';
  import type { Message } from 'dbus-next';

  /** A connection that has done the authentication handshake and carries messages. */
  export interface RawConnection extends EventEmitter {
    stream: Duplex;
    /** Sends a message; it must carry a serial. Buffered until the handshake is done. */
    message(msg: Message): void;
    on(event: 'connect', listener: () => void): this;
    on(event: 'message', listener: (msg: Message) => void): this;
    on(event: 'error', listener: (error: unknown) => void): this;
    on(event: 'end', listener: () => void): this;
  }

  function createConnection(opts: { busAddress: string }): RawConnection;
  export default createConnection;
}

declare module 'dbus-next/lib/message.js' {
  import type { Readable } from 'node:stream';

  /** Reads messages off a stream that is past the handshake, in dbus-next's marshaller format. */
  export function unmarshalMessages(
    stream: Readable,
    onMessage: (message: Record<string, unknown>) => void,
    opts: Record<string, unknown>,
  ): void;
}

declare module 'dbus-next/lib/marshall-compat.js' {
  import type { Message } from 'dbus-next';

  /** Converts a message read by `unmarshalMessages` to the plain-JS form `Message` takes. */
  export function messageToJsFmt(message: Record<string, unknown>): Record<string, unknown>;
  /** Marshals a message (with a serial) for the wire: [bytes, file descriptors]. */
  export function marshallMessage(message: Message): [Buffer, number[]];
}
