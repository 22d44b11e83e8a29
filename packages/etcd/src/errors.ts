/**
 * Turns errors from the etcd client into SluiceErrors that say what to do next: whether a retry
 * can help (`retryable`, from the etcd3 client's own test for recoverable errors and cockatiel's
 * open circuit), a machine-readable `reason` where callers act on one, and a message about etcd,
 * the user and the permission, never a library's internals on their own (grpc-js's empty
 * "Resolution note", cockatiel's "Execution prevented because the circuit breaker is open").
 * etcd's own error strings are matched once, here, as the etcd3 client itself matches them;
 * nothing else in sluice reads an error's message.
 */
import { isSluiceError, SluiceError } from '@sluice/core';
import { isBrokenCircuitError } from 'cockatiel';
import {
  ClientClosedError,
  castGrpcError,
  EtcdAuthenticationFailedError,
  EtcdError,
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

/** Who the client authenticates as, for messages about denials. */
export interface EtcdErrorContext {
  /** The etcd user name; null when none is configured; undefined: as `connectEtcd()` last saw. */
  user?: string | null | undefined;
}

/**
 * The user this process connects to etcd as (`connectEtcd()` notes it; a process has one etcd
 * identity): denials name it without every call site passing it. Undefined before any connect.
 */
let processUser: string | null | undefined;

/** Notes the etcd user this process connects as (null: none), for messages about denials. */
export function noteEtcdUser(user: string | null): void {
  processUser = user;
}

/**
 * etcd's answers (its rpctypes error strings) that callers act on, by the reason they get. The
 * etcd3 client maps a few of these to classes; the rest only by their text.
 */
const ETCD_ANSWERS: readonly [string, string][] = [
  ['etcdserver: user name is empty', 'no-user'],
  ['etcdserver: invalid auth token', 'bad-token'],
  ['etcdserver: authentication is not enabled', 'auth-disabled'],
  ['etcdserver: authentication failed, invalid user ID or password', 'bad-credentials'],
  ['etcdserver: permission denied', 'permission'],
  ['etcdserver: too many operations in txn request', 'txn-too-big'],
  ['mvcc: required revision has been compacted', 'compacted'],
];

function answerOf(message: string): string | undefined {
  return ETCD_ANSWERS.find(([text]) => message.includes(text))?.[1];
}

/** The error's own words, without grpc-js's empty "Resolution note" and trailing dots. */
function cleanMessage(error: unknown): string {
  return (error instanceof Error ? error.message : String(error))
    .replace(/\s*Resolution note:\s*\.?\s*/g, ' ')
    .replace(/[.\s]+$/, '')
    .trim();
}

/** The denial reason of an error (see ETCD_ANSWERS), or undefined when it is no denial. */
function denialOf(error: unknown, answer: string | undefined): string | undefined {
  if (answer === 'no-user' || answer === 'bad-credentials' || answer === 'permission') {
    return answer;
  }
  if (answer === 'bad-token' || error instanceof EtcdInvalidAuthTokenError) return 'bad-token';
  if (error instanceof EtcdAuthenticationFailedError) return 'bad-credentials';
  if (error instanceof EtcdPermissionDeniedError) return 'permission';
  return undefined;
}

/** Why etcd denied a request, in words, with what to do about it. */
function describeDenial(reason: string, message: string, user: string | null | undefined): string {
  const who =
    user === undefined ? 'the etcd user' : user ? `user ${JSON.stringify(user)}` : 'no user';
  switch (reason) {
    case 'no-user': {
      const sent = user ? `user ${JSON.stringify(user)} was not sent` : 'no user is configured';
      return `etcd has authentication enabled and ${user === undefined ? 'no user name was sent' : sent} (${message}); set the user and its password (sluiced: etcd.username and etcd.passwordFile; sluicectl: --user and --password-file)`;
    }
    case 'bad-credentials':
      return `etcd refused the credentials of ${who} (${message}); check the user name and the password file`;
    case 'bad-token':
      return `etcd refused the auth token of ${who} (${message}); it is renewed on the next call, so a lasting failure means the user or its password changed`;
    default:
      return `${who} lacks the permission (${message}); grant its role read and write on the sluice prefix (deploy/etcd/setup-rbac.sh makes such a role; the read-only role may only read)`;
  }
}

/**
 * Wraps any error from an etcd call as a SluiceError: `etcd-denied` for auth and permission
 * failures (saying which user and what to grant), `etcd-unavailable` (retryable) for what a
 * retry can fix, `etcd-refused` for the rest. `what` names the request: `a read of
 * /sluice/v1/groups/web/windows`. SluiceErrors pass through unchanged.
 */
export function toSluiceError(
  error: unknown,
  what: string,
  context: EtcdErrorContext = {},
): SluiceError {
  if (isSluiceError(error)) return error;
  if (isBrokenCircuitError(error)) {
    return new SluiceError(
      'etcd-unavailable',
      `etcd did not answer ${what}: the last calls to every endpoint failed, so calls wait a moment before trying again. Check that the endpoints are reachable and TLS settings match the server`,
      undefined,
      { cause: error, retryable: true, reason: 'unreachable' },
    );
  }
  // A plain grpc-js error ("14 UNAVAILABLE: ...") gets its etcd3 class, as the client's own calls do.
  if (error instanceof Error) error = castGrpcError(error);
  const message = cleanMessage(error);
  const answer = answerOf(message);
  const denied = denialOf(error, answer);
  if (denied) {
    const user = context.user !== undefined ? context.user : processUser;
    return new SluiceError(
      'etcd-denied',
      `etcd denied ${what}: ${describeDenial(denied, message, user)}`,
      undefined,
      { cause: error, retryable: false, reason: denied },
    );
  }
  if (error instanceof Error && isRecoverableError(error)) {
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

/**
 * A one-line description of any error for a log line: a SluiceError's message, an etcd error
 * converted as by `toSluiceError`, anything else's own message.
 */
export function describeError(error: unknown, what = 'a request'): string {
  if (isSluiceError(error)) return error.message;
  const fromEtcd =
    error instanceof EtcdError ||
    isBrokenCircuitError(error) ||
    // grpc-js's form: "14 UNAVAILABLE: No connection established ..."
    (error instanceof Error && /^\d+ [A-Z_]+:/.test(error.message));
  if (fromEtcd) return toSluiceError(error, what).message;
  return error instanceof Error ? error.message : String(error);
}

/** Runs an etcd call and converts whatever it throws with toSluiceError. */
export async function etcdCall<T>(
  what: string,
  fn: () => Promise<T>,
  context: EtcdErrorContext = {},
): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw toSluiceError(error, what, context);
  }
}
