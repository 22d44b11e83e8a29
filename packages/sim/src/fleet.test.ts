import { describe, expect, it } from 'vitest';
import { rebootingOrBooting } from './fleet.js';

describe('a node whose record says rebooting', () => {
  it('is rebooting until the machine comes back, then booting', () => {
    // Record written at 100; no boot since.
    expect(rebootingOrBooting(100, null)).toBe('rebooting');
    // A boot from an earlier reboot does not count.
    expect(rebootingOrBooting(100, 40)).toBe('rebooting');
    // Up again after the record: the agent is back and has yet to move on.
    expect(rebootingOrBooting(100, 1100)).toBe('booting');
    expect(rebootingOrBooting(null, 1100)).toBe('rebooting');
  });
});
