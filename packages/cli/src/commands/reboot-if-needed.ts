/**
 * `sluicectl reboot-if-needed`: one pass of the agent, for fleets that run sluice from a timer
 * (`sluice-reboot.timer`) instead of the `sluiced` daemon. It reads the agent's configuration
 * (`/etc/sluice/sluiced.yaml`, update.conf, SLUICE_* and the connection flags), and if an update
 * is staged and the window is open it takes a slot and reboots. With `--release-only` (run at boot
 * by `sluice-release.service`) it only runs the post-reboot checks and gives the slot back.
 */
import { parseDuration, SluiceError } from '@sluice/core';
import { type Context, EXIT } from '../context.js';

/** Options of the command. */
export interface RebootIfNeededOptions {
  releaseOnly?: boolean;
  wait: string;
  config?: string;
  updateConf?: string;
  machineIdFile?: string;
  bootIdFile?: string;
  node?: string;
  tokenFile?: string;
}

/** Runs the agent's lifecycle once; exit 0 when it settled well, 1 when it gave up or failed. */
export async function rebootIfNeeded(ctx: Context, opts: RebootIfNeededOptions): Promise<number> {
  const wait = parseDuration(opts.wait, '--wait');
  if (!wait.ok) throw wait.error;
  const agent = await import('@sluice/agent');
  const g = ctx.options;
  const config = await agent.loadAgentConfig({
    env: ctx.io.env,
    flags: {
      ...(opts.config ? { config: opts.config } : {}),
      ...(opts.node ? { node: opts.node } : {}),
      ...(opts.tokenFile ? { tokenFile: opts.tokenFile } : {}),
      ...(g.endpoints ? { endpoints: g.endpoints } : {}),
      ...(g.cacert ? { cacert: g.cacert } : {}),
      ...(g.cert ? { cert: g.cert } : {}),
      ...(g.key ? { key: g.key } : {}),
      ...(g.user ? { user: g.user } : {}),
      ...(g.password ? { password: g.password } : {}),
      ...(g.passwordFile ? { passwordFile: g.passwordFile } : {}),
      ...(g.prefix ? { prefix: g.prefix } : {}),
      ...(g.group ? { group: g.group } : {}),
    },
    ...(opts.updateConf !== undefined
      ? { updateConfFiles: opts.updateConf.split(':').filter(Boolean) }
      : {}),
    ...(opts.machineIdFile ? { machineIdFile: opts.machineIdFile } : {}),
  });
  if (config.strategy === 'off') {
    ctx.out('strategy is off: sluice never reboots this node');
    return EXIT.ok;
  }
  // Logs go to stderr, so stdout carries only the result.
  const logger = agent.agentLogger(config, 2);
  const result = await agent.rebootIfNeeded(config, {
    releaseOnly: opts.releaseOnly ?? false,
    waitMs: wait.value,
    logger,
    ...(opts.bootIdFile ? { bootIdFile: opts.bootIdFile } : {}),
    ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
  });
  if (ctx.json) ctx.outJson({ node: config.node.id, group: config.etcd.group, ...result });
  else ctx.out(`${result.outcome}: ${result.detail}`);
  if (result.code !== 0 && result.outcome === 'timed-out') {
    throw new SluiceError(
      'refused',
      `no slot within ${opts.wait}: ${result.detail}; try again later`,
    );
  }
  return result.code === 0 ? EXIT.ok : EXIT.refused;
}
