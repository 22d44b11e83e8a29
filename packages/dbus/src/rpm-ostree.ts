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

import { err, ok, type Result, SluiceError } from '@sluice/core';
import { Message, Variant } from 'dbus-next';
import { abortedError, callMethod } from './bus.js';
import {
  type FollowerEvents,
  type FollowerOptions,
  type FollowerSession,
  type ReadReason,
  ServiceFollower,
  type SessionCalls,
} from './follower.js';
import {
  addMatch,
  getAllMessage,
  isServiceUnknown,
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

/** The events of {@link RpmOstreeClient}: see `FollowerEvents`. */
export type RpmOstreeEvents = FollowerEvents<SysrootStatus>;

/** Options for {@link RpmOstreeClient}. */
export interface RpmOstreeClientOptions extends FollowerOptions {
  /** The client id passed to `RegisterClient` (shown by `rpm-ostree status`). Default `sluiced`. */
  clientId?: string;
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
export class RpmOstreeClient extends ServiceFollower<SysrootStatus> {
  private readonly clientId: string;

  constructor(options: RpmOstreeClientOptions = {}) {
    super(RPMOSTREE_NAME, 'rpm-ostreed', options);
    this.clientId = options.clientId ?? 'sluiced';
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

  protected async subscribe(session: FollowerSession, calls: SessionCalls): Promise<void> {
    await callMethod(session.bus, addMatch(propertiesChangedRule), calls);
  }

  /** Not running: registering starts it where the bus can (systemd activation). */
  protected override async opened(
    session: FollowerSession,
    signal: AbortSignal,
    lookUpOwner: () => Promise<void>,
  ): Promise<void> {
    if (session.owner === undefined && (await this.register(session, signal))) {
      await lookUpOwner();
    }
    if (session.owner !== undefined) await this.register(session, signal);
  }

  /** rpm-ostreed that (re)appeared forgot its clients: register again before reading. */
  protected override async beforeRead(session: FollowerSession, why: ReadReason): Promise<void> {
    if (why === 'appeared') await this.register(session);
  }

  protected sameStatus(a: SysrootStatus, b: SysrootStatus): boolean {
    return JSON.stringify(a) === JSON.stringify(b);
  }

  /**
   * `RegisterClient`: keeps rpm-ostreed from exiting while this client is connected. Resolves
   * false when nobody provides the name.
   */
  private async register(session: FollowerSession, signal?: AbortSignal): Promise<boolean> {
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

  protected async readStatus(
    session: FollowerSession,
    signal?: AbortSignal,
  ): Promise<SysrootStatus> {
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

  protected onServiceSignal(session: FollowerSession, message: Message): void {
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
        this.readInBackground(session, 'changed');
        return;
      }
      if (!('Deployments' in changed) && !('Booted' in changed)) return;
      const next = applyChange(changed, this.current);
      if (next === null) this.readInBackground(session, 'changed');
      else if (next.ok) this.apply(session, next.value);
      else if (session === this.session) this.emit('problem', next.error);
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
