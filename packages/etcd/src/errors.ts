/**
 * Turns errors from the etcd client into SluiceErrors that say what to do next. Messages never
 * carry a library's internals on their own: grpc-js's empty "Resolution note", cockatiel's
 * "Execution prevented because the circuit breaker is open" and etcd's terse auth errors become
 * sentences about etcd, the user and the permission.
 */
import { isSluiceError, SluiceError } from '@sluice/core';
import { isBrokenCircuitError } from 'cockatiel';
import {
  EtcdAuthenticationFailedError,
  EtcdError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  isRecoverableError,
} from 'etcd3';

/** True for an etcd error that a retry could fix (connection lost, no leader, timeout). */
export function isTransient(error: unknown): boolean {
  if (isSluiceError(error)) return error.kind === 'etcd-unavailable';
  if (isBrokenCircuitError(error)) return true;
  return error instanceof Error && isRecoverableError(error);
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

/** The error's own words, without grpc-js's empty "Resolution note" and trailing dots. */
function cleanMessage(error: unknown): string {
  return (error instanceof Error ? error.message : String(error))
    .replace(/\s*Resolution note:\s*\.?\s*/g, ' ')
    .replace(/[.\s]+$/, '')
    .trim();
}

/** Why etcd denied a request, in words, or null when the error is no denial. */
function denial(error: unknown, message: string, user: string | null | undefined): string | null {
  const who =
    user === undefined ? 'the etcd user' : user ? `user ${JSON.stringify(user)}` : 'no user';
  if (/user name is empty/i.test(message)) {
    const sent = user ? `user ${JSON.stringify(user)} was not sent` : 'no user is configured';
    return `etcd has authentication enabled and ${user === undefined ? 'no user name was sent' : sent} (${message}); set the user and its password (sluiced: etcd.username and etcd.passwordFile; sluicectl: --user and --password-file)`;
  }
  if (
    error instanceof EtcdAuthenticationFailedError ||
    /authentication failed|invalid user ID or password/i.test(message)
  ) {
    return `etcd refused the credentials of ${who} (${message}); check the user name and the password file`;
  }
  if (error instanceof EtcdInvalidAuthTokenError || /invalid auth token/i.test(message)) {
    return `etcd refused the auth token of ${who} (${message}); it is renewed on the next call, so a lasting failure means the user or its password changed`;
  }
  if (error instanceof EtcdPermissionDeniedError || /permission denied/i.test(message)) {
    return `${who} lacks the permission (${message}); grant its role read and write on the sluice prefix (deploy/etcd/setup-rbac.sh makes such a role; the read-only role may only read)`;
  }
  return null;
}

/**
 * Wraps any error from an etcd call as a SluiceError: `etcd-denied` for auth and permission
 * failures (saying which user and what to grant), `etcd-unavailable` for the rest. `what` names
 * the request: `a read of /sluice/v1/groups/web/windows`. SluiceErrors pass through unchanged.
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
      { cause: error },
    );
  }
  const message = cleanMessage(error);
  const denied = denial(error, message, context.user !== undefined ? context.user : processUser);
  if (denied) {
    return new SluiceError('etcd-denied', `etcd denied ${what}: ${denied}`, undefined, {
      cause: error,
    });
  }
  return new SluiceError(
    'etcd-unavailable',
    `etcd did not answer ${what}: ${message}. Check that the endpoints are reachable and TLS settings match the server`,
    undefined,
    { cause: error },
  );
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
