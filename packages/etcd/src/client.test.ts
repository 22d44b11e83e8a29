import { GRPCUnavailableError } from 'etcd3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { etcdClientOptions } from './client.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('the per-endpoint circuit breaker', () => {
  it('closes again 2 s after it opened, even when the wall clock stepped back meanwhile', async () => {
    const options = await etcdClientOptions({ endpoints: ['http://127.0.0.1:2379'] });
    const policy = options.faultHandling!.host!('127.0.0.1:2379');
    const fail = () => Promise.reject(new GRPCUnavailableError('connection refused'));
    for (let i = 0; i < 3; i++) await expect(policy.execute(fail)).rejects.toThrow();
    // Open: calls are refused without reaching the endpoint.
    await expect(policy.execute(() => 'reached')).rejects.toThrow(/open/i);
    // NTP steps the clock back an hour (only Date moves; timers and performance.now do not).
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 3_600_000 });
    await new Promise((r) => setTimeout(r, 2100));
    vi.setSystemTime(Date.now() + 2100);
    await expect(policy.execute(() => 'reached')).resolves.toBe('reached');
  });
});
