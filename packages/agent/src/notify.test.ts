import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAgentConfig, redactConfig } from './config/index.js';
import { checkTemplate, type Notification, renderBody } from './notify.js';

const n: Notification = {
  id: 'group-halted-7',
  event: 'group-halted',
  group: 'web',
  node: null,
  summary: 'group web halted: node "n3" lost during reboot',
  text: '[sluice] group web halted: node "n3" lost during reboot',
  detail: 'line one\nline two',
  version: null,
  by: null,
  at: '2026-12-01T15:00:00.000Z',
  observedBy: 'n1',
};

describe('notification bodies', () => {
  it('is the notification as JSON without a template', () => {
    expect(JSON.parse(renderBody(null, n))).toEqual(n);
  });

  it('fills a template, escaping values for JSON strings', () => {
    const body = renderBody(
      '{"text": "{{text}}", "who": "{{ observedBy }}", "node": "{{node}}"}',
      n,
    );
    expect(JSON.parse(body)).toEqual({ text: n.text, who: 'n1', node: '' });
    expect(JSON.parse(renderBody('{"d": "{{detail}}"}', n))).toEqual({ d: 'line one\nline two' });
  });

  it('refuses templates with unknown fields or that are not JSON', () => {
    expect(checkTemplate('{"text": "{{text}}"}')).toBeNull();
    expect(checkTemplate('{"text": "{{txet}}"}')).toMatch(/unknown field "txet"/);
    expect(checkTemplate('{"text": {{text}}}')).toMatch(/not JSON/);
  });
});

describe('notify settings', () => {
  it('load from YAML, fail naming the key, and keep webhook tokens out of logs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-notify-'));
    try {
      const file = join(dir, 'sluiced.yaml');
      const load = () =>
        loadAgentConfig({ configFile: file, env: {}, updateConfFiles: [], flags: { node: 'n1' } });
      await writeFile(
        file,
        [
          'notify:',
          '  webhooks: [https://hooks.example.com/services/T0/B0/SECRETTOKEN]',
          '  events: [group-halted, node-lost]',
          '  timeout: 3s',
          '  template: \'{"text": "{{text}}"}\'',
        ].join('\n'),
      );
      const config = await load();
      expect(config.notify).toEqual({
        webhooks: ['https://hooks.example.com/services/T0/B0/SECRETTOKEN'],
        template: '{"text": "{{text}}"}',
        events: ['group-halted', 'node-lost'],
        timeoutMs: 3000,
        attempts: 5,
      });
      expect(JSON.stringify(redactConfig(config))).not.toContain('SECRETTOKEN');

      await writeFile(file, 'notify:\n  events: [node-found]\n');
      await expect(load()).rejects.toThrow(
        /notify\.events\[0\]: expected group-halted, .*"node-found"/,
      );
      await writeFile(file, 'notify:\n  webhooks: [ftp://x]\n');
      await expect(load()).rejects.toThrow(/notify\.webhooks\[0\]: expected an http/);
      await writeFile(file, 'notify:\n  template: "{{text}}"\n');
      await expect(load()).rejects.toThrow(/notify\.template: filled in, it is not JSON/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
