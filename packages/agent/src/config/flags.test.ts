import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { AGENT_FLAGS, addAgentFlags, agentFlagsHelp } from './flags.js';
import { settingsReference } from './reference.js';

describe("sluiced's settings table", () => {
  it('is the settings reference in docs/sluiced.md (npm run docs updates it)', async () => {
    const doc = await readFile(new URL('../../../../docs/sluiced.md', import.meta.url), 'utf8');
    const block = /<!-- settings:begin -->\n([\s\S]*?)\n<!-- settings:end -->/.exec(doc);
    expect(block?.[1], 'the settings reference in docs/sluiced.md is stale: run npm run docs').toBe(
      await settingsReference(),
    );
  });

  it('drives the flags, --help and the reference alike: each setting in all three', async () => {
    const command = addAgentFlags(new Command());
    const flags = new Set(command.options.map((o) => o.long));
    const help = agentFlagsHelp();
    const reference = await settingsReference();
    for (const spec of AGENT_FLAGS) {
      const long = spec.flag.split(' ')[0]!;
      expect(flags, long).toContain(long);
      if (spec.negatable) expect(flags).toContain(long.replace(/^--/, '--no-'));
      expect(help).toContain(long.replace(/^--/, spec.negatable ? '--[no-]' : '--'));
      expect(reference).toContain(
        `| \`${spec.negatable ? long.replace(/^--/, '--[no-]') : spec.flag}`,
      );
      for (const env of spec.env) expect(reference).toContain(`\`${env}\``);
    }
    expect(reference.split('\n')).toHaveLength(AGENT_FLAGS.length + 2);
    // Defaults come from the configuration the agent resolves, not from the help texts.
    expect(reference).toContain('| `etcd.sessionTTL` | `30s` |');
    expect(reference).toContain('| `reboot.loopLimit` | `3` |');
  });
});
