import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FAILURE_KINDS, MAX_BODY_BYTES, parseBody } from './protocol.js';
import { placeTTLFor } from './service.js';

const body = (params: unknown) => JSON.stringify({ client_params: params });

describe('parseBody', () => {
  it('takes id and group, and ignores unknown fields', () => {
    const parsed = parseBody(
      JSON.stringify({ client_params: { id: 'abc', group: 'a.b-1', extra: 1 }, other: true }),
    );
    expect(parsed).toEqual({ ok: true, params: { id: 'abc', group: 'a.b-1' } });
  });

  it.each([
    ['{', 'the body is not valid JSON'],
    ['null', 'body'],
    [JSON.stringify({ id: 'a', group: 'g' }), 'client_params'],
    [body({ group: 'g' }), 'client_params.id'],
    [body({ id: 'a' }), 'client_params.group'],
    [body({ id: '', group: 'g' }), 'client_params.id: must not be empty'],
    [body({ id: 'a', group: '' }), 'client_params.group: must not be empty'],
    [body({ id: 'a', group: 'a_b' }), 'client_params.group "a_b" is not a group name'],
    [body({ id: 'a', group: '-a' }), 'client_params.group "-a" is not a group name'],
    [body({ id: 'a/b', group: 'g' }), 'client_params.id "a/b" is not a node id'],
    [body({ id: 'x'.repeat(300), group: 'g' }), 'is not a node id'],
  ])('refuses %s, naming the field', (text, message) => {
    const parsed = parseBody(text);
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.reply.kind).toBe('bad_request');
    expect(parsed.reply.status).toBe(400);
    expect(parsed.reply.value).toContain(message);
    // A long id is cut short in the message, not echoed whole.
    expect(parsed.reply.value.length).toBeLessThan(250);
  });
});

describe('placeTTLFor', () => {
  it("keeps a Zincati client's place for 300 s + 10 % + 10 s, and a short interval's for a bit more", () => {
    expect(placeTTLFor(300_000)).toBe(340);
    expect(placeTTLFor(60_000)).toBe(72);
    expect(placeTTLFor(1000)).toBe(2);
  });
});

describe('docs/fleetlock.md', () => {
  it('lists exactly the failure kinds, with their status codes and the body limit', () => {
    const doc = readFileSync(new URL('../../../docs/fleetlock.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| (\d{3}) \| `([a-z_]+)` \|/gm)].map((m) => [
      m[2],
      Number(m[1]),
    ]);
    expect(Object.fromEntries(rows)).toEqual(
      Object.fromEntries(Object.entries(FAILURE_KINDS).map(([kind, k]) => [kind, k.status])),
    );
    expect(rows).toHaveLength(Object.keys(FAILURE_KINDS).length);
    expect(doc).toContain(`longer than ${MAX_BODY_BYTES} bytes`);
  });
});
