/**
 * Builds the update sources for image- and package-based systems from the configuration: one
 * line each, in the order the agent prefers them.
 */
import { z } from 'zod';
import { bool, duration, q, section, text, typeOf } from './config/fields.js';
import type { AgentConfig } from './config/index.js';
import type { UpdateSource } from './sources.js';
import { BootcSource, RpmOstreeSource } from './sources-ostree.js';
import { dnfSource, needrestartSource, sysupdateSource } from './sources-packages.js';

/** The configured rpm-ostree, bootc, systemd-sysupdate, needrestart and dnf sources. */
export function osSources(
  config: AgentConfig,
  onProblem: (source: string, error: Error) => void,
): UpdateSource[] {
  const s = config.sources;
  const out: UpdateSource[] = [];
  if (s.rpmOstree) {
    out.push(
      new RpmOstreeSource(config.dbus.address, {
        onProblem: (error) => onProblem('rpm-ostree', error),
      }),
    );
  }
  if (s.bootc) out.push(new BootcSource(s.bootc));
  if (s.sysupdate) out.push(sysupdateSource(s.sysupdate));
  if (s.needrestart) out.push(needrestartSource(s.needrestart));
  if (s.dnf) out.push(dnfSource(s.dnf));
  return out;
}

/** The file path of a sentinel source: absolute; null or `off` turns it off. */
const sentinelSchema = z
  .string({ error: (issue) => `expected a file path or null, got ${typeOf(issue.input)}` })
  .nullable()
  .transform((value, ctx) => {
    if (value === null || value === 'off') return null;
    if (!value.startsWith('/')) {
      ctx.issues.push({
        code: 'custom',
        message: `expected an absolute path, got ${q(value)}`,
        input: value,
      });
      return z.NEVER;
    }
    return value;
  });

/** A preset source: true / false / null, or its settings (which turn it on). */
function presetSchema<T extends z.ZodRawShape>(extra: T) {
  return z
    .union(
      [
        bool,
        z.null(),
        section({
          interval: duration({ positive: true }).optional(),
          path: text
            .refine((p) => p.startsWith('/'), 'expected an absolute path to the program')
            .optional(),
          timeout: duration({ positive: true }).optional(),
          ...extra,
        }),
      ],
      { error: 'expected true, false, null or a mapping such as { interval: 5m }' },
    )
    .optional();
}

/**
 * The `sources` section of the configuration: update_engine, the sentinel file, a command,
 * manual requests, and the OS sources this file sets up.
 */
export const SourcesSchema = section({
  updateEngine: bool.optional(),
  sentinel: sentinelSchema.optional(),
  command: section({
    run: text.optional(),
    interval: duration({ positive: true }).optional(),
  })
    .nullable()
    .optional(),
  manual: bool.optional(),
  rpmOstree: bool.optional(),
  bootc: presetSchema({}),
  sysupdate: presetSchema({ component: text.optional() }),
  needrestart: presetSchema({}),
  dnf: presetSchema({}),
});
