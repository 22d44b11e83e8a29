/**
 * Following rpm-ostreed (Fedora CoreOS, RHEL for Edge, Fedora IoT and Atomic desktops) over D-Bus:
 * the `Deployments` property of `org.projectatomic.rpmostree1.Sysroot`, read once and then kept up
 * with through `PropertiesChanged`, across rpm-ostreed restarts and bus reconnects. And finalizing
 * a deployment that was staged with finalization locked: `FinalizeDeployment` on the booted OS
 * object, followed through rpm-ostree's private transaction socket. Finalizing unlocks the
 * deployment and reboots the machine.
 *
 * Why one file: the D-Bus client, the parsing of deployments and the transaction socket are one
 * protocol, and the source's decisions depend on all three.
 */

import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { err, isSluiceError, ok, type Result, SluiceError } from '@sluice/core';
import { ExponentialBackoff, type IBackoffFactory } from 'cockatiel';
import { Message, type MessageBus, MessageType, Variant } from 'dbus-next';
import {
  abortedError,
  type BusAddress,
  callMethod,
  closeBus,
  connectBus,
  DEFAULT_CALL_TIMEOUT_MS,
  onBusClosed,
} from './bus.js';
import {
  addMatch,
  busMethod,
  DBUS_NAME,
  getAllMessage,
  isNoOwner,
  isServiceUnknown,
  nameOwnerChangedRule,
  PROPERTIES_INTERFACE,
  unwrap,
} from './helpers.js';
import { PeerConnection } from './peer.js';

/** The well-known bus name rpm-ostreed owns. */
export const RPMOSTREE_NAME = 'org.projectatomic.rpmostree1';
/** The object path of the sysroot object. */
export const RPMOSTREE_SYSROOT_PATH = '/org/projectatomic/rpmostree1/Sysroot';
/** The interface with `Deployments` and `Booted`. */
export const RPMOSTREE_SYSROOT_INTERFACE = 'org.projectatomic.rpmostree1.Sysroot';
/** The interface of an OS object, with `FinalizeDeployment`. */
export const RPMOSTREE_OS_INTERFACE = 'org.projectatomic.rpmostree1.OS';
/** The interface of a transaction on its private socket, with `Start` and `Finished`. */
export const RPMOSTREE_TRANSACTION_INTERFACE = 'org.projectatomic.rpmostree1.Transaction';

/** One deployment, from the `aa{sv}` of `Deployments` (rpm-ostree's key names in comments). */
export interface Deployment {
  /** `id`, such as `fedora-coreos-5c7d...0`. */
  id: string;
  /** `osname`. */
  osname: string;
  /** `checksum`: the commit this deployment boots. */
  checksum: string;
  /** `base-checksum`: the base commit under layered packages; finalization is checked on it. */
  baseChecksum: string | undefined;
  /** `version`, such as `41.20250105.3.0`, when the commit has one. */
  version: string | undefined;
  /** `booted`: this is the running deployment. */
  booted: boolean;
  /** `staged`: written at shutdown (ostree-finalize-staged.service), first in boot order. */
  staged: boolean;
  /** `finalization-locked`: the staged deployment is not applied at shutdown until finalized. */
  finalizationLocked: boolean;
}

/** What rpm-ostreed reports about the sysroot. */
export interface SysrootStatus {
  /** `Booted`: the object path of the booted OS, where `FinalizeDeployment` is called. */
  booted: string;
  /** `Deployments`, in boot order: the first is the default (staged, if one is). */
  deployments: Deployment[];
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/**
 * Reads the `Deployments` property (after {@link unwrap}). Fails on anything that is not a list
 * of dictionaries with at least `id` and `checksum`.
 */
export function parseDeployments(value: unknown): Result<Deployment[]> {
  if (!Array.isArray(value)) {
    return err(bad(`Deployments is not a list (got ${typeof value})`));
  }
  const out: Deployment[] = [];
  for (const [i, item] of value.entries()) {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      return err(bad(`Deployments[${i}] is not a dictionary`));
    }
    const d = item as Record<string, unknown>;
    const id = str(d.id);
    const checksum = str(d.checksum);
    if (!id || !checksum) return err(bad(`Deployments[${i}] has no id or checksum`));
    out.push({
      id,
      osname: str(d.osname) ?? '',
      checksum,
      baseChecksum: str(d['base-checksum']),
      version: str(d.version) || undefined,
      booted: d.booted === true,
      staged: d.staged === true,
      finalizationLocked: d['finalization-locked'] === true,
    });
  }
  return ok(out);
}

/**
 * The deployment a reboot would bring, and why: a staged one, or a default (first) deployment
 * that is not the booted one (a deploy or rollback without staging). Null when the booted
 * deployment is the default and nothing is staged.
 */
export function pendingDeployment(
  deployments: readonly Deployment[],
): { deployment: Deployment; why: 'staged' | 'default' } | null {
  const staged = deployments.find((d) => d.staged);
  if (staged) return { deployment: staged, why: 'staged' };
  const first = deployments[0];
  if (first && !first.booted) return { deployment: first, why: 'default' };
  return null;
}

const bad = (what: string): SluiceError =>
  new SluiceError('dbus-unavailable', `rpm-ostreed sent ${what}`, RPMOSTREE_NAME);

/**
 * The events of {@link RpmOstreeClient}:
 *
 * - `status`: the sysroot status changed (a `PropertiesChanged` signal or a fresh read differs
 *   from the last status). Fires for the first status too.
 * - `connected` / `disconnected`: the bus connection came back / was lost (it reconnects with
 *   backoff and jitter; meanwhile `status` keeps the last value).
 * - `service-up` / `service-down`: rpm-ostreed appeared on / left the bus.
 * - `problem`: something failed that the client gets over by itself. Log it.
 */
export interface RpmOstreeEvents {
  status: [status: SysrootStatus];
  connected: [];
  disconnected: [error: SluiceError];
  'service-up': [owner: string];
  'service-down': [];
  problem: [error: SluiceError];
}

/** Options for {@link RpmOstreeClient}. */
export interface RpmOstreeClientOptions {
  /** The bus rpm-ostreed is on. Defaults to `'system'`. */
  address?: BusAddress;
  /** How long each D-Bus call, and connecting, may take. Defaults to 5 s. */
  callTimeoutMs?: number;
  /** Delays between reconnect attempts. Defaults to exponential backoff from 250 ms to 30 s. */
  reconnectBackoff?: IBackoffFactory<undefined>;
  /** The client id passed to `RegisterClient` (shown by `rpm-ostree status`). Default `sluiced`. */
  clientId?: string;
}

interface Session {
  bus: MessageBus;
  /** rpm-ostreed's unique name on this connection, if it is on the bus. */
  owner: string | undefined;
  done: AbortController;
}

/**
 * Follows rpm-ostreed's sysroot. Call {@link RpmOstreeClient.start} once, read
 * {@link RpmOstreeClient.status} or listen for events, and {@link RpmOstreeClient.close} it.
 *
 * rpm-ostreed is started by the bus on demand and exits when idle: the client registers itself
 * (`RegisterClient`), which starts it and keeps it running while the client is connected, and
 * registers again whenever rpm-ostreed (re)appears. The status is read with `GetAll` when
 * rpm-ostreed appears, and kept up with through `PropertiesChanged` in between, applied in order.
 */
export class RpmOstreeClient extends EventEmitter<RpmOstreeEvents> {
  private readonly address: BusAddress;
  private readonly callTimeoutMs: number;
  private readonly reconnectBackoff: IBackoffFactory<undefined>;
  private readonly clientId: string;
  private readonly lifetime = new AbortController();
  private session: Session | undefined;
  private current: SysrootStatus | undefined;
  private started = false;

  constructor(options: RpmOstreeClientOptions = {}) {
    super();
    this.address = options.address ?? 'system';
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.reconnectBackoff =
      options.reconnectBackoff ?? new ExponentialBackoff({ initialDelay: 250, maxDelay: 30_000 });
    this.clientId = options.clientId ?? 'sluiced';
  }

  /** The last status seen, or undefined before rpm-ostreed first answered. */
  get status(): SysrootStatus | undefined {
    return this.current;
  }

  /** True while the client has a bus connection. */
  get connected(): boolean {
    return this.session !== undefined;
  }

  /** True while rpm-ostreed is known to be on the bus. */
  get serviceUp(): boolean {
    return this.session?.owner !== undefined;
  }

  /**
   * Connects, subscribes, starts rpm-ostreed if the bus can and reads the status. Resolves once
   * that is done; the status is still undefined if rpm-ostreed is not there (it is read when it
   * appears). Call it once.
   *
   * @throws SluiceError `dbus-unavailable` when the bus cannot be reached or rpm-ostreed is there
   *   but does not answer; `aborted` when `signal` fires first. The client is then closed.
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.started) throw new Error('RpmOstreeClient.start() may only be called once');
    this.started = true;
    const combined = signal
      ? AbortSignal.any([signal, this.lifetime.signal])
      : this.lifetime.signal;
    try {
      const session = await this.openSession(combined);
      if (session.owner !== undefined) await this.readStatus(session, combined);
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /**
   * Asks rpm-ostreed to reload the sysroot from disk (`Reload`) and reads the status again: a
   * backstop for a change made behind rpm-ostreed's back (`ostree admin` directly).
   *
   * @throws SluiceError `dbus-unavailable` when not connected or rpm-ostreed does not answer.
   */
  async refresh(signal?: AbortSignal): Promise<SysrootStatus> {
    const session = this.requireSession();
    const calls = { signal, timeoutMs: this.callTimeoutMs };
    await callMethod(session.bus, this.sysroot('Reload', '', []), calls);
    return this.readStatus(session, signal);
  }

  /**
   * Finalizes the staged deployment, which must have base checksum `checksum`: rpm-ostreed
   * unlocks it and reboots the machine. Calls `FinalizeDeployment` on the booted OS, connects to
   * the transaction's private socket, starts it and waits for `Finished`. Resolves once
   * rpm-ostreed reports success; the machine goes down shortly after.
   *
   * @throws SluiceError `dbus-unavailable` when rpm-ostreed is not there, refuses (nothing
   *   staged, another checksum staged, already unlocked), or the transaction fails or does not
   *   finish within `timeoutMs` (default 2 min); `aborted` when `signal` fires first.
   */
  async finalize(
    checksum: string,
    options: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<void> {
    const { signal } = options;
    const timeoutMs = options.timeoutMs ?? 120_000;
    const session = this.requireSession();
    const os = this.current?.booted;
    if (!os) {
      throw new SluiceError(
        'dbus-unavailable',
        'cannot finalize: rpm-ostreed has not reported the booted OS',
        RPMOSTREE_NAME,
      );
    }
    const reply = await callMethod(
      session.bus,
      new Message({
        destination: RPMOSTREE_NAME,
        path: os,
        interface: RPMOSTREE_OS_INTERFACE,
        member: 'FinalizeDeployment',
        signature: 'a{sv}',
        body: [
          {
            checksum: new Variant('s', checksum),
            'initiating-command-line': new Variant('s', 'sluiced: finalize-deployment'),
          },
        ],
      }),
      { signal, timeoutMs: this.callTimeoutMs },
    );
    const address = String(reply.body[0] ?? '');
    const peer = await PeerConnection.connect(address, signal, this.callTimeoutMs);
    try {
      const finished = new Promise<[boolean, string]>((resolve, reject) => {
        peer.onSignal((msg) => {
          if (msg.interface === RPMOSTREE_TRANSACTION_INTERFACE && msg.member === 'Finished') {
            resolve([msg.body[0] === true, String(msg.body[1] ?? '')]);
          }
        });
        peer.onClose((why) =>
          reject(
            new SluiceError(
              'dbus-unavailable',
              `rpm-ostree's finalize transaction ended without finishing: ${why}`,
              address,
            ),
          ),
        );
      });
      finished.catch(() => {});
      await peer.call(
        { path: '/', interface: RPMOSTREE_TRANSACTION_INTERFACE, member: 'Start' },
        { signal, timeoutMs: this.callTimeoutMs },
      );
      const [success, message] = await withTimeout(
        finished,
        timeoutMs,
        signal,
        `rpm-ostree's finalize transaction did not finish within ${timeoutMs} ms`,
      );
      if (!success) {
        throw new SluiceError(
          'dbus-unavailable',
          `rpm-ostree could not finalize deployment ${checksum.slice(0, 12)}: ${message || 'no reason given'}`,
          RPMOSTREE_NAME,
        );
      }
    } finally {
      peer.close();
    }
  }

  /** Stops following: ends reconnecting and closes the connection. Safe to call more than once. */
  async close(): Promise<void> {
    this.lifetime.abort();
    const session = this.session;
    this.session = undefined;
    if (session !== undefined) {
      session.done.abort();
      await closeBus(session.bus);
    }
  }

  private requireSession(): Session {
    const session = this.session;
    if (session === undefined) {
      throw new SluiceError(
        'dbus-unavailable',
        `not connected to the D-Bus daemon at ${this.address}`,
        this.address,
      );
    }
    return session;
  }

  private sysroot(member: string, signature: string, body: unknown[]): Message {
    return new Message({
      destination: RPMOSTREE_NAME,
      path: RPMOSTREE_SYSROOT_PATH,
      interface: RPMOSTREE_SYSROOT_INTERFACE,
      member,
      signature,
      body,
    });
  }

  private async openSession(signal: AbortSignal): Promise<Session> {
    const bus = await connectBus(this.address, signal, this.callTimeoutMs);
    const session: Session = { bus, owner: undefined, done: new AbortController() };
    bus.on('message', (message: Message) => this.onMessage(session, message));
    onBusClosed(bus, (error) => this.onClosed(session, error));
    const calls = { signal, timeoutMs: this.callTimeoutMs };
    const getOwner = () =>
      callMethod(bus, busMethod('GetNameOwner', 's', [RPMOSTREE_NAME]), {
        ...calls,
        onReply: (reply) => {
          session.owner = String(reply.body[0]);
        },
      }).catch((error: unknown) => {
        if (!isNoOwner(error)) throw error;
      });
    try {
      await callMethod(bus, addMatch(nameOwnerChangedRule(RPMOSTREE_NAME)), calls);
      await callMethod(bus, addMatch(propertiesChangedRule), calls);
      await getOwner();
      // Not running: registering starts it where the bus can (systemd activation).
      if (session.owner === undefined && (await this.register(session, signal))) {
        await getOwner();
      }
      if (session.owner !== undefined) await this.register(session, signal);
    } catch (error) {
      session.done.abort();
      await closeBus(bus);
      throw error;
    }
    if (this.lifetime.signal.aborted || session.done.signal.aborted) {
      session.done.abort();
      await closeBus(bus);
      throw this.lifetime.signal.aborted
        ? abortedError(this.lifetime.signal)
        : new SluiceError(
            'dbus-unavailable',
            `the D-Bus connection to ${this.address} closed while subscribing to rpm-ostreed`,
            this.address,
          );
    }
    this.session = session;
    if (session.owner !== undefined) this.emit('service-up', session.owner);
    return session;
  }

  /**
   * `RegisterClient`: keeps rpm-ostreed from exiting while this client is connected. Resolves
   * false when nobody provides the name.
   */
  private async register(session: Session, signal?: AbortSignal): Promise<boolean> {
    try {
      await callMethod(
        session.bus,
        this.sysroot('RegisterClient', 'a{sv}', [{ id: new Variant('s', this.clientId) }]),
        { signal, timeoutMs: this.callTimeoutMs },
      );
      return true;
    } catch (error) {
      if (isServiceUnknown(error)) return false;
      throw error;
    }
  }

  private async readStatus(session: Session, signal?: AbortSignal): Promise<SysrootStatus> {
    let parsed: Result<SysrootStatus> | undefined;
    await callMethod(
      session.bus,
      getAllMessage(RPMOSTREE_NAME, RPMOSTREE_SYSROOT_PATH, RPMOSTREE_SYSROOT_INTERFACE),
      {
        signal,
        timeoutMs: this.callTimeoutMs,
        onReply: (reply) => {
          parsed = parseAll(unwrap(reply.body[0]));
          if (parsed.ok) this.apply(session, parsed.value);
        },
      },
    );
    if (parsed === undefined) throw bad('no answer to GetAll');
    if (!parsed.ok) throw parsed.error;
    return parsed.value;
  }

  private readInBackground(session: Session, registerFirst: boolean): void {
    void (async () => {
      if (registerFirst) await this.register(session);
      await this.readStatus(session);
    })().catch((error: unknown) => {
      if (!session.done.signal.aborted) this.emit('problem', asSluiceError(error));
    });
  }

  private apply(session: Session, status: SysrootStatus): void {
    if (session !== this.session && this.session !== undefined) return;
    if (this.current !== undefined && JSON.stringify(this.current) === JSON.stringify(status)) {
      return;
    }
    this.current = status;
    this.emit('status', status);
  }

  private onMessage(session: Session, message: Message): void {
    if (message.type !== MessageType.SIGNAL || session.done.signal.aborted) return;
    if (
      message.sender === DBUS_NAME &&
      message.member === 'NameOwnerChanged' &&
      message.body[0] === RPMOSTREE_NAME
    ) {
      const owner = String(message.body[2] ?? '');
      const wasUp = session.owner !== undefined;
      session.owner = owner === '' ? undefined : owner;
      if (session !== this.session) return;
      if (wasUp) this.emit('service-down');
      if (session.owner !== undefined) {
        this.emit('service-up', session.owner);
        this.readInBackground(session, true);
      }
      return;
    }
    if (
      message.path === RPMOSTREE_SYSROOT_PATH &&
      message.interface === PROPERTIES_INTERFACE &&
      message.member === 'PropertiesChanged' &&
      message.body[0] === RPMOSTREE_SYSROOT_INTERFACE &&
      message.sender === session.owner
    ) {
      const changed = (unwrap(message.body[1]) ?? {}) as Record<string, unknown>;
      const invalidated = Array.isArray(message.body[2]) ? (message.body[2] as string[]) : [];
      if (invalidated.includes('Deployments') || invalidated.includes('Booted')) {
        this.readInBackground(session, false);
        return;
      }
      if (!('Deployments' in changed) && !('Booted' in changed)) return;
      const next = applyChange(changed, this.current);
      if (next === null) this.readInBackground(session, false);
      else if (next.ok) this.apply(session, next.value);
      else if (session === this.session) this.emit('problem', next.error);
    }
  }

  private onClosed(session: Session, error: SluiceError): void {
    session.done.abort();
    if (session !== this.session || this.lifetime.signal.aborted) return;
    this.session = undefined;
    this.emit('disconnected', error);
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    const stop = this.lifetime.signal;
    let backoff = this.reconnectBackoff.next(undefined);
    while (!stop.aborted) {
      try {
        await sleep(backoff.duration, undefined, { signal: stop });
      } catch {
        return;
      }
      try {
        const session = await this.openSession(stop);
        this.emit('connected');
        if (session.owner !== undefined) this.readInBackground(session, false);
        return;
      } catch (error) {
        if (stop.aborted) return;
        this.emit('problem', asSluiceError(error));
        backoff = backoff.next(undefined);
      }
    }
  }
}

/** Reads `GetAll`'s dictionary (unwrapped). */
function parseAll(all: unknown): Result<SysrootStatus> {
  const props = (all ?? {}) as Record<string, unknown>;
  const booted = str(props.Booted);
  if (booted === undefined) return err(bad('no Booted object path'));
  const parsed = parseDeployments(props.Deployments);
  return parsed.ok ? ok({ booted, deployments: parsed.value }) : parsed;
}

/**
 * The status after a `PropertiesChanged` that carries `Deployments` and/or `Booted`; null when the
 * change is partial and there is no earlier status to complete it (read everything instead).
 */
function applyChange(
  changed: Record<string, unknown>,
  current: SysrootStatus | undefined,
): Result<SysrootStatus> | null {
  const booted = 'Booted' in changed ? str(changed.Booted) : current?.booted;
  if (booted === undefined) return 'Booted' in changed ? err(bad('no Booted object path')) : null;
  if (!('Deployments' in changed)) {
    return current ? ok({ booted, deployments: current.deployments }) : null;
  }
  const parsed = parseDeployments(changed.Deployments);
  return parsed.ok ? ok({ booted, deployments: parsed.value }) : parsed;
}

const propertiesChangedRule = `type='signal',sender='${RPMOSTREE_NAME}',path='${RPMOSTREE_SYSROOT_PATH}',interface='${PROPERTIES_INTERFACE}',member='PropertiesChanged',arg0='${RPMOSTREE_SYSROOT_INTERFACE}'`;

function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  signal: AbortSignal | undefined,
  message: string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => done(() => reject(new SluiceError('dbus-unavailable', message))),
      ms,
    );
    const onAbort = () => done(() => reject(abortedError(signal)));
    const done = (outcome: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      outcome();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => done(() => resolve(value)),
      (error: unknown) => done(() => reject(error)),
    );
  });
}

const asSluiceError = (error: unknown): SluiceError =>
  isSluiceError(error)
    ? error
    : new SluiceError('dbus-unavailable', String(error), undefined, { cause: error });
