/// <reference path="../../dbus/src/dbus-next-internals.d.ts" />
/**
 * A peer-to-peer D-Bus server on a `unix:path=` socket, as rpm-ostreed opens one per transaction:
 * no bus daemon, EXTERNAL authentication, then messages both ways. The fake rpm-ostreed uses it
 * for its transactions. It speaks the wire protocol through dbus-next's own marshaller.
 */

import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { Message, MessageType } from 'dbus-next';
import { marshallMessage, messageToJsFmt } from 'dbus-next/lib/marshall-compat.js';
import { unmarshalMessages } from 'dbus-next/lib/message.js';

/** What a handler may do with a method call it received. */
export interface PeerReply {
  /** Answers the call with a method return. */
  ok(signature?: string, body?: unknown[]): void;
  /** Answers the call with a D-Bus error. */
  error(name: string, text: string): void;
}

/** A listening peer-to-peer server. {@link PeerServer.close} it when done. */
export class PeerServer {
  #serial = 1;
  readonly #sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    /** The socket path. */
    readonly path: string,
  ) {}

  /** The address a client connects to: `unix:path=<path>`. */
  get address(): string {
    return `unix:path=${this.path}`;
  }

  /**
   * Listens on `path` and calls `onCall` for every method call a client makes; calls nobody
   * answers are answered with `UnknownMethod`.
   */
  static async listen(
    path: string,
    onCall: (call: Message, reply: PeerReply) => void,
  ): Promise<PeerServer> {
    const server = createServer();
    const peer = new PeerServer(server, path);
    server.on('connection', (socket) => peer.#accept(socket, onCall));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return peer;
  }

  /** Sends a signal to every connected client. */
  broadcast(path: string, iface: string, member: string, signature: string, body: unknown[]): void {
    for (const socket of this.#sockets) {
      this.#send(
        socket,
        new Message({
          type: MessageType.SIGNAL,
          serial: this.#serial++,
          path,
          interface: iface,
          member,
          signature,
          body,
        }),
      );
    }
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  #send(socket: Socket, message: Message): void {
    if (socket.destroyed) return;
    const [data] = marshallMessage(message);
    socket.write(data);
  }

  #accept(socket: Socket, onCall: (call: Message, reply: PeerReply) => void): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const guid = randomBytes(16).toString('hex');
    let buffered = Buffer.alloc(0);
    const onReadable = () => {
      for (;;) {
        const chunk = socket.read() as Buffer | null;
        if (chunk === null) return;
        buffered = Buffer.concat([buffered, chunk]);
        // The client's first byte is a NUL, then CRLF-terminated commands until BEGIN.
        if (buffered[0] === 0) buffered = buffered.subarray(1);
        for (let end = buffered.indexOf('\r\n'); end >= 0; end = buffered.indexOf('\r\n')) {
          const line = buffered.subarray(0, end).toString('ascii');
          buffered = buffered.subarray(end + 2);
          if (line.startsWith('AUTH EXTERNAL')) socket.write(`OK ${guid}\r\n`);
          else if (line.startsWith('AUTH')) socket.write('REJECTED EXTERNAL\r\n');
          else if (line === 'NEGOTIATE_UNIX_FD') socket.write('ERROR\r\n');
          else if (line === 'BEGIN') {
            socket.off('readable', onReadable);
            if (buffered.length > 0) socket.unshift(buffered);
            this.#serve(socket, onCall);
            return;
          } else socket.write('ERROR\r\n');
        }
      }
    };
    socket.on('readable', onReadable);
  }

  #serve(socket: Socket, onCall: (call: Message, reply: PeerReply) => void): void {
    unmarshalMessages(
      socket,
      (raw) => {
        const call = new Message(messageToJsFmt(raw) as ConstructorParameters<typeof Message>[0]);
        if (call.type !== MessageType.METHOD_CALL) return;
        let answered = false;
        const reply: PeerReply = {
          ok: (signature = '', body = []) => {
            if (answered) return;
            answered = true;
            this.#send(
              socket,
              new Message({
                type: MessageType.METHOD_RETURN,
                serial: this.#serial++,
                replySerial: call.serial as unknown as string,
                signature,
                body,
              }),
            );
          },
          error: (name, text) => {
            if (answered) return;
            answered = true;
            this.#send(
              socket,
              new Message({
                type: MessageType.ERROR,
                serial: this.#serial++,
                replySerial: call.serial as unknown as string,
                errorName: name,
                signature: 's',
                body: [text],
              }),
            );
          },
        };
        onCall(call, reply);
        if (!answered) {
          reply.error('org.freedesktop.DBus.Error.UnknownMethod', `no method ${call.member}`);
        }
      },
      {},
    );
  }
}
