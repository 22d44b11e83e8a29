/**
 * Errors people can act on. Every error sluice raises on purpose is a `SluiceError`: it has a
 * machine-readable `kind` and a message that names the key, file or flag at fault. Guard with
 * `isSluiceError()` rather than `instanceof`, which breaks across bundles and realms.
 */

/** What went wrong, for programs: the CLI maps kinds to exit codes, metrics count them. */
export type ErrorKind =
  /** A value stored in etcd could not be parsed (`max = "abc"`). `where` names the key. */
  | 'invalid-value'
  /** A configuration file, environment variable or flag is invalid. `where` names it. */
  | 'invalid-config'
  /** A reboot window spec could not be parsed. `where` names where the spec came from. */
  | 'invalid-window'
  /** The operation was refused: the group is full, the node does not hold a slot, a race was lost. */
  | 'refused'
  /** etcd could not be reached or timed out: a retry may well work. */
  | 'etcd-unavailable'
  /** etcd rejected our credentials or permissions. */
  | 'etcd-denied'
  /**
   * etcd answered and refused the request (an invalid argument, a txn with too many operations,
   * a compacted revision): the same request again will be refused again.
   */
  | 'etcd-refused'
  /** A D-Bus peer could not be reached or answered with an error. */
  | 'dbus-unavailable'
  /** A pre- or post-reboot check failed. */
  | 'check-failed'
  /** The operation was cancelled through its AbortSignal. */
  | 'aborted';

const brand = Symbol.for('sluice.error');

/** What a SluiceError may carry besides its kind and message. */
export interface SluiceErrorOptions {
  cause?: unknown;
  /** Whether trying the same again may work. Default: only for `etcd-unavailable` and `dbus-unavailable`. */
  retryable?: boolean;
  /** The etcd key at fault. */
  key?: string;
  /** The setting or record field at fault, e.g. `etcd.endpoints` or `windows`. */
  field?: string;
  /**
   * A machine-readable cause within the kind, for callers that act on it (e.g. `no-user`,
   * `auth-disabled`, `compacted`, `too-large`, `timeout`): never parse the message.
   */
  reason?: string;
}

/** An error with a kind and, where it helps, the key, file or flag it is about. */
export class SluiceError extends Error {
  readonly [brand] = true;
  override readonly name = 'SluiceError';
  /** Whether trying the same again may work (a retry policy asks this). */
  readonly retryable: boolean;
  readonly key: string | undefined;
  readonly field: string | undefined;
  readonly reason: string | undefined;

  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** The etcd key, file path, environment variable or flag at fault, if there is one. */
    readonly where?: string,
    options: SluiceErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable =
      options.retryable ?? (kind === 'etcd-unavailable' || kind === 'dbus-unavailable');
    this.key = options.key;
    this.field = options.field;
    this.reason = options.reason;
  }

  /** A plain object for JSON output and structured logs. */
  toJSON(): { kind: ErrorKind; message: string; where?: string } {
    return this.where === undefined
      ? { kind: this.kind, message: this.message }
      : { kind: this.kind, message: this.message, where: this.where };
  }
}

/** True for any SluiceError, even one created by another copy of this module. */
export function isSluiceError(err: unknown): err is SluiceError {
  return (
    typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[brand] === true
  );
}

/** The outcome of a parse or a check: a value, or an error that says what is wrong. */
export type Result<T, E = SluiceError> = { ok: true; value: T } | { ok: false; error: E };

/** Wraps a value as a successful Result. */
export const ok = <T>(value: T): Result<T, never> => ({ ok: true, value });

/** Wraps an error as a failed Result. */
export const err = <E>(error: E): Result<never, E> => ({ ok: false, error });

/** Throws when the signal is aborted, as a SluiceError of kind `aborted`. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new SluiceError('aborted', 'operation cancelled', undefined, { cause: signal.reason });
  }
}
