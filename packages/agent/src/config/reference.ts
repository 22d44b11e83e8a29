/**
 * The settings reference of docs/sluiced.md, as a Markdown table drawn from the flags table (flag,
 * environment variables, YAML key, meaning) with each default as the agent resolves it: a
 * configuration loaded from no file, no variables and no flags. `npm run docs` writes it; a test
 * fails when the doc is stale.
 */

import { describeConfig } from './describe.js';
import { SETTINGS } from './flags.js';
import { loadAgentConfig } from './load.js';
import { DEFAULT_CONFIG_FILE, DEFAULT_MACHINE_ID_FILE } from './types.js';

/** Defaults that depend on the machine, said in words. */
const MACHINE_DEFAULTS: Record<string, string> = {
  'node.id': `the contents of ${DEFAULT_MACHINE_ID_FILE}`,
  'node.hostname': 'the host name',
};

/** The settings reference table (see the file's comment). */
export async function settingsReference(): Promise<string> {
  const config = await loadAgentConfig({
    // An empty file, so that a node's own /etc/sluice/sluiced.yaml does not leak in.
    configFile: '/dev/null',
    env: {},
    flags: { node: 'reference' },
    updateConfFiles: [],
    hostname: 'reference',
    localtimeFile: '/nonexistent',
  });
  const defaults = new Map(describeConfig(config).map((r) => [r.key, r.value]));
  const cell = (text: string) => text.replaceAll('|', '\\|');
  const rows = SETTINGS.map((s) => {
    const flag = s.negatable ? s.flag.replace(/^--/, '--[no-]') : s.flag;
    const env = s.env.map((e) => `\`${e}\``).join(', ');
    const value = s.path ? defaults.get(s.path) : DEFAULT_CONFIG_FILE;
    const byDefault =
      MACHINE_DEFAULTS[s.path] ?? (value === undefined ? '-' : `\`${cell(value)}\``);
    const key = s.path ? `\`${s.path}\`` : '-';
    return `| \`${flag}\` | ${env} | ${key} | ${byDefault} | ${cell(s.description)} |`;
  });
  return [
    '| Flag | Environment | YAML key | Default | Meaning |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}
