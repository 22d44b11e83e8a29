import { ETCD_ENV, ETCD_FLAGS } from '@sluice/etcd/settings';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addEtcdOptions } from './etcd-options.js';

describe('the etcd connection flags', () => {
  it("are the shared table's, with every variable named in the help, and --group only where asked", () => {
    const withGroup = addEtcdOptions(new Command());
    expect(withGroup.options.map((o) => o.flags)).toEqual(ETCD_FLAGS.map((f) => f.flag));
    for (const option of withGroup.options) {
      const spec = ETCD_FLAGS.find((f) => f.flag === option.flags)!;
      expect(option.attributeName()).toBe(spec.name);
      for (const env of ETCD_ENV[spec.field]) expect(option.description).toContain(env);
    }
    const without = addEtcdOptions(new Command(), { group: false });
    expect(without.options.map((o) => o.long)).not.toContain('--group');
  });
});
