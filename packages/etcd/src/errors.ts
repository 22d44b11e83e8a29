/**
 * Turns errors from the etcd client into SluiceErrors that say what to do next.
 */
import { isSluiceError, SluiceError } from '@sluice/core';
import {
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  isRecoverableError,
} from 'etcd3';

/** True for an etcd error that a retry could fix (connection lost, no leader, timeout). */
export function isTransient(error: unknown): boolean {
  if (isSluiceError(error)) return error.kind === 'etcd-unavailable';
  return error instanceof Error && isRecoverableError(error);
}

/**
 * Wraps any error from an etcd call as a SluiceError: `etcd-denied` for auth and permission
 * failures, `etcd-unavailable` for the rest. SluiceErrors pass through unchanged.
 */
export function toSluiceError(error: unknown, what: string): SluiceError {
  if (isSluiceError(error)) return error;
  // grpc-js appends an empty "Resolution note: ." to connection errors; it helps nobody.
  const message = (error instanceof Error ? error.message : String(error))
    .replace(/\s*Resolution note:\s*\.?\s*$/, '')
    .replace(/[.\s]+$/, '');
  if (
    error instanceof EtcdPermissionDeniedError ||
    error instanceof EtcdAuthenticationFailedError ||
    error instanceof EtcdInvalidAuthTokenError ||
    /permission denied|authentication failed|invalid auth token|user name is empty/i.test(message)
  ) {
    return new SluiceError(
      'etcd-denied',
      `etcd denied ${what}: ${message}. Check the user, password and role grants for the sluice prefix`,
      undefined,
      { cause: error },
    );
  }
  return new SluiceError(
    'etcd-unavailable',
    `etcd did not answer ${what}: ${message}. Check that the endpoints are reachable and TLS settings match the server`,
    undefined,
    { cause: error },
  );
}

/** Runs an etcd call and converts whatever it throws with toSluiceError. */
export async function etcdCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw toSluiceError(error, what);
  }
}
