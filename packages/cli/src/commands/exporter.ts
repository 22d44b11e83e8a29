/**
 * `sluicectl exporter`: serves the group metrics of one group, or of every group under the
 * prefix, for Prometheus on a loopback address, until SIGINT or SIGTERM. See `../exporter.ts`
 * for what it exports and why this is not the agents' job.
 */
import { SluiceError } from '@sluice/core';
import { type Context, EXIT } from '../context.js';
import { GroupExporter } from '../exporter.js';
import { listGroups } from './status.js';

/** Options of `sluicectl exporter`. */
export interface ExporterCommandOptions {
  listen: string;
  allGroups?: boolean;
  /** With --all-groups: how often to look for new groups. */
  discoverEvery: string;
  allowRemote?: boolean;
}

/** Serves until the run's signal fires. */
export async function exporter(ctx: Context, opts: ExporterCommandOptions): Promise<number> {
  const { parseListenAddress } = await import('@sluice/agent');
  const { parseDuration } = await import('@sluice/core');
  const address = parseListenAddress(opts.listen);
  if (!address.ok)
    throw new SluiceError('invalid-config', `--listen: ${address.error}`, '--listen');
  const { host, port } = address.value;
  const loopback = host === 'localhost' || host === '::1' || host.startsWith('127.');
  if (!loopback && !opts.allowRemote) {
    throw new SluiceError(
      'invalid-config',
      `--listen ${opts.listen} is not a loopback address; the metrics name nodes and groups, so serve them beyond this host only on purpose: add --allow-remote`,
      '--listen',
    );
  }
  if (opts.allGroups && ctx.options.group !== undefined) {
    throw new SluiceError(
      'invalid-config',
      `--group ${ctx.options.group} and --all-groups cannot be used together`,
      '--group',
    );
  }
  const every = parseDuration(opts.discoverEvery, '--discover-every');
  if (!every.ok) throw every.error;
  const settings = await ctx.settings();
  const client = await ctx.client();
  const exporter = new GroupExporter(client, {
    prefix: settings.prefix,
    groups: opts.allGroups ? [] : [settings.group],
    ...(opts.allGroups
      ? { listGroups: () => listGroups(client, settings.prefix), discoverEveryMs: every.value }
      : {}),
    onError: (error) => ctx.err(`sluicectl: ${error.message}`),
  });
  ctx.defer(() => exporter.close());
  await exporter.start();
  const server = await exporter.serve(host, port);
  ctx.defer(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const bound = server.address();
  const where =
    bound && typeof bound === 'object'
      ? `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`
      : opts.listen;
  const groups = exporter.groups;
  ctx.err(
    `serving metrics of ${opts.allGroups ? `every group under ${settings.prefix} (now: ${groups.join(', ') || 'none'})` : `group ${settings.group}`} on http://${where}/metrics; Ctrl-C to stop`,
  );
  const signal = ctx.io.signal;
  await new Promise<void>((resolve) => {
    if (!signal) return;
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  return EXIT.ok;
}
