/**
 * Turns errors from the etcd client into SluiceErrors that say what to do next: whether a retry
 * can help (`retryable`, from the etcd3 client's own test for recoverable errors and cockatiel's
 * open circuit), and a machine-readable `reason` where callers act on one. etcd's own error
 * strings are matched once, here, as the etcd3 client itself matches them; nothing else in
 * sluice reads an error's message.
 */
import { isSluiceError, SluiceError } from '@sluice/core';
import { isBrokenCircuitError } from 'cockatiel';
import {
  ClientClosedError,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCOutOfRangeError,
  GRPCResourceExhastedError,
  isRecoverableError,
} from 'etcd3';

/** True for an error a retry could fix (connection lost, no leader, timeout). */
export function isTransient(error: unknown): boolean {
  if (isSluiceError(error)) return error.retryable;
  return error instanceof Error && (isRecoverableError(error) || isBrokenCircuitError(error));
}

/**
 * etcd's answers (its rpctypes error strings) that callers act on, by the reason they get. The
 * etcd3 client maps a few of these to classes; the rest only by their text.
 */
const ETCD_ANSWERS: readonly [string, string][] = [
  ['etcdserver: user name is empty', 'no-user'],
  ['etcdserver: invalid auth token', 'no-user'],
  ['etcdserver: authentication is not enabled', 'auth-disabled'],
  ['etcdserver: authentication failed, invalid user ID or password', 'bad-credentials'],
  ['etcdserver: permission denied', 'permission'],
  ['etcdserver: too many operations in txn request', 'txn-too-big'],
  ['mvcc: required revision has been compacted', 'compacted'],
];

function answerOf(message: string): string | undefined {
  return ETCD_ANSWERS.find(([text]) => message.includes(text))?.[1];
}

/**
 * Wraps any error from an etcd call as a SluiceError: `etcd-denied` for auth and permission
 * failures, `etcd-unavailable` (retryable) for what a retry can fix, `etcd-refused` for the rest.
 * SluiceErrors pass through unchanged.
 */
export function toSluiceError(error: unknown, what: string): SluiceError {
  if (isSluiceError(error)) return error;
  // grpc-js appends an empty "Resolution note: ." to connection errors; it helps nobody.
  const message = (error instanceof Error ? error.message : String(error))
    .replace(/\s*Resolution note:\s*\.?\s*$/, '')
    .replace(/[.\s]+$/, '');
  const answer = answerOf(message);
  const denied =
    error instanceof EtcdPermissionDeniedError ||
    error instanceof EtcdAuthenticationFailedError ||
    error instanceof EtcdInvalidAuthTokenError ||
    answer === 'no-user' ||
    answer === 'bad-credentials' ||
    answer === 'permission';
  if (denied) {
    return new SluiceError(
      'etcd-denied',
      `etcd denied ${what}: ${message}. Check the user, password and role grants for the sluice prefix`,
      undefined,
      { cause: error, retryable: false, reason: answer ?? 'permission' },
    );
  }
  if (error instanceof Error && (isRecoverableError(error) || isBrokenCircuitError(error))) {
    const reason =
      error instanceof GRPCResourceExhastedError
        ? 'too-large'
        : error instanceof GRPCDeadlineExceededError
          ? 'timeout'
          : 'unreachable';
    // Too large is "recoverable" for the etcd3 client (a quota), but the same read stays too big.
    return new SluiceError(
      'etcd-unavailable',
      `etcd did not answer ${what}: ${message}. Check that the endpoints are reachable and TLS settings match the server`,
      undefined,
      { cause: error, retryable: reason !== 'too-large', reason },
    );
  }
  const reason =
    answer ??
    (error instanceof GRPCOutOfRangeError ? 'compacted' : undefined) ??
    (error instanceof ClientClosedError ? 'closed' : 'refused');
  return new SluiceError('etcd-refused', `etcd refused ${what}: ${message}`, undefined, {
    cause: error,
    retryable: false,
    reason,
  });
}

/** Runs an etcd call and converts whatever it throws with toSluiceError. */
export async function etcdCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw toSluiceError(error, what);
  }
}
