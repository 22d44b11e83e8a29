/**
 * Builds a running agent from a validated config: logger, metrics, etcd client, semaphore, update
 * sources. `sluiced` (main.ts) and the fleet simulator both start agents through here.
 */
import { connectEtcd, connectionOptions, Semaphore } from '@sluice/etcd';
import type { Etcd3 } from 'etcd3';
import { type Logger, pino } from 'pino';
import { Agent, readBootId } from './agent.js';
import { type AgentConfig, redactConfig } from './config.js';
import { AgentMetrics } from './metrics.js';
import { CommandSource, SentinelFileSource, type UpdateSource } from './sources.js';
import { ManualRequestSource, UpdateEngineSource } from './update-sources.js';

/** Extra run-time options that are not part of the operator's config. */
export interface RunOptions {
  logger?: Logger;
  /** Follow no update sources: only recover (post-check and release after a reboot). */
  noSources?: boolean;
  bootIdFile?: string;
  retryDelayMs?: number;
}

/** A started agent and everything to stop with it. */
export interface RunningAgent {
  agent: Agent;
  metrics: AgentMetrics;
  /** The metrics server's address, when enabled. */
  metricsAddress: string | null;
  /** Resolves once the agent has recovered from its record and follows its update sources. */
  ready: Promise<void>;
  /** The node's semaphore; null unless the strategy is etcd-lock. */
  semaphore: Semaphore | null;
  stop(): Promise<void>;
}

/** Starts an agent for `config`. Rejects on an error a restart cannot fix (bad TLS files). */
export async function startAgent(
  config: AgentConfig,
  opts: RunOptions = {},
): Promise<RunningAgent> {
  // Before anything else: without a boot id the agent must not run at all (exit 2).
  const bootId = await readBootId(opts.bootIdFile);
  const logger = opts.logger ?? pino({ level: config.log.level, base: { node: config.node.id } });
  logger.info({ config: redactConfig(config) }, 'configuration');
  const metrics = new AgentMetrics();
  const server = config.metrics.listen ? await metrics.serve(config.metrics.listen) : null;
  const address = server?.address();
  const metricsAddress =
    address && typeof address === 'object' ? `${address.address}:${address.port}` : null;

  let client: Etcd3 | null = null;
  let semaphore: Semaphore | null = null;
  const sources: UpdateSource[] = [];
  const wantSources = !opts.noSources;
  if (config.strategy === 'etcd-lock') {
    client = await connectEtcd(await connectionOptions(config.etcd));
    semaphore = new Semaphore(client, {
      node: config.node.id,
      hostname: config.node.hostname,
      prefix: config.etcd.prefix,
      group: config.etcd.group,
      sessionTTL: config.etcd.sessionTTL,
      holdTTL: config.etcd.holdTTL,
      localWindows: config.windows,
      onRetry: (error) => {
        metrics.etcdErrors.inc();
        logger.warn(
          { err: error instanceof Error ? error.message : String(error) },
          'etcd error while waiting for a slot; retrying',
        );
      },
    });
    const waiting = semaphore;
    metrics.queuePositionSource = () => waiting.position();
    if (wantSources && config.sources.manual) {
      sources.push(new ManualRequestSource(client, semaphore.keys, config.node.id));
    }
  }
  if (wantSources && config.sources.updateEngine) {
    sources.push(
      new UpdateEngineSource(config.dbus.address, (error) => {
        metrics.dbusErrors.inc();
        logger.warn({ err: error.message }, 'update_engine connection problem');
      }),
    );
  }
  if (wantSources && config.sources.sentinel)
    sources.push(new SentinelFileSource(config.sources.sentinel));
  if (wantSources && config.sources.command) {
    sources.push(new CommandSource(config.sources.command.run, config.sources.command.intervalMs));
  }

  const agent = new Agent({
    config,
    client,
    semaphore,
    sources,
    logger,
    metrics,
    bootId,
    ...(opts.retryDelayMs !== undefined ? { retryDelayMs: opts.retryDelayMs } : {}),
  });
  // Recovery waits out an etcd outage, so it runs in the background: SIGTERM works meanwhile.
  const ready = agent.start();
  ready.catch((error: unknown) => logger.error({ err: String(error) }, 'agent failed to start'));
  return {
    agent,
    metrics,
    metricsAddress,
    ready,
    semaphore,
    async stop() {
      await agent.stop();
      client?.close();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    },
  };
}
