import { describe, expect, it } from 'vitest';
import { agentProgram, SLUICED, SLUICED_BUNDLE } from './programs.js';

describe('agentProgram', () => {
  it('names the program for each kind, and refuses a typo instead of running something else', () => {
    expect(() => agentProgram('bundel')).toThrow(/expected bundle or built, got "bundel"/);
    expect(SLUICED).toMatch(/packages\/agent\/dist\/main\.js$/);
    expect(SLUICED_BUNDLE).toMatch(/\/dist-bundle\/sluiced\.mjs$/);
  });
});
