import { BrokenCircuitError } from 'cockatiel';
import { describe, expect, it } from 'vitest';
import { describeError, toSluiceError } from './errors.js';

describe('etcd errors in words', () => {
  it('says what a denial means, naming the user or its absence', () => {
    const empty = new Error('3 INVALID_ARGUMENT: etcdserver: user name is empty');
    expect(toSluiceError(empty, 'a read of k', { user: null }).message).toMatch(
      /^etcd denied a read of k: etcd has authentication enabled and no user is configured .*etcd\.username/,
    );
    const denied = new Error('7 PERMISSION_DENIED: etcdserver: permission denied');
    const e = toSluiceError(denied, 'a write of k', { user: 'agent' });
    expect(e.kind).toBe('etcd-denied');
    expect(e.message).toContain('user "agent" lacks the permission');
    expect(e.message).toContain('grant its role read and write on the sluice prefix');
    const wrong = new Error(
      '3 INVALID_ARGUMENT: etcdserver: authentication failed, invalid user ID or password',
    );
    expect(toSluiceError(wrong, 'x', { user: 'agent' }).message).toContain(
      'etcd refused the credentials of user "agent"',
    );
  });

  it('keeps library internals out of messages', () => {
    // As grpc-js makes it: a plain Error with the status code.
    const grpc = Object.assign(
      new Error(
        '14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ',
      ),
      { code: 14 },
    );
    const text = describeError(grpc, 'a read of k');
    expect(text).not.toContain('Resolution note');
    expect(text).toMatch(
      /^etcd did not answer a read of k: 14 UNAVAILABLE: .*ECONNREFUSED 127\.0\.0\.1:1\. Check/,
    );
    const breaker = describeError(new BrokenCircuitError());
    expect(breaker).not.toContain('circuit breaker');
    expect(breaker).toContain('the last calls to every endpoint failed');
    expect(describeError(new Error('plain'))).toBe('plain');
  });
});
