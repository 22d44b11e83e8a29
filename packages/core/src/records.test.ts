import { describe, expect, it } from 'vitest';
import {
  MAX_RECORD_BYTES,
  NodeRegistrationSchema,
  PauseRecordSchema,
  parseRecord,
} from './records.js';

describe('parseRecord', () => {
  it('reads a record, and says what is wrong with one that is not', () => {
    const pause = { reason: 'disk swap', since: '2026-12-01T15:00:00.000Z', by: 'ann@vm' };
    expect(parseRecord(PauseRecordSchema, JSON.stringify(pause))).toEqual({
      ok: true,
      value: pause,
    });
    expect(parseRecord(PauseRecordSchema, '{"reason":')).toEqual({
      ok: false,
      error: { kind: 'not-json', message: 'is not valid JSON' },
    });
    const invalid = parseRecord(NodeRegistrationSchema, '{"v":1}');
    expect(invalid).toMatchObject({ ok: false, error: { kind: 'invalid' } });
    if (!invalid.ok) {
      expect(invalid.error.message).toBe(`is not a valid record: ${invalid.error.detail}`);
      expect(invalid.error.detail).toBeTruthy();
    }
    const big = JSON.stringify({ reason: 'x'.repeat(MAX_RECORD_BYTES) });
    expect(parseRecord(PauseRecordSchema, big)).toMatchObject({
      ok: false,
      error: {
        kind: 'too-big',
        message: expect.stringContaining(`${MAX_RECORD_BYTES}-byte limit`),
      },
    });
  });
});
