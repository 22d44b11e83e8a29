/**
 * Builds a running agent from a validated config: logger, metrics, etcd client, semaphore, update
 * sources. `sluiced` (main.ts) and the fleet simulator both start agents through here.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { formatWindowSpec, GroupKeys } from '@sluice/core';
import {
  checkClock,
  connectEtcd,
  connectionOptions,
  describeError,
  type EtcdClient,
  EtcdGroupSettings,
  EtcdNotifyStore,
  NodeRegistry,
  Semaphore,
} from '@sluice/etcd';
import { type Logger, pino } from 'pino';
import { Agent, readBootId } from './agent.js';
import { BlockerLog } from './blocker-log.js';
import { type AgentConfig, redactConfig } from './config/index.js';
import { instanceToken } from './identity.js';
import { AgentMetrics } from './metrics.js';
import { Notifier, NotifyObserver } from './notify.js';
import { osSources } from './os-sources.js';
import { RebootLoopGuard } from './reboot-guard.js';
import { CommandSource, SentinelFileSource, type UpdateSource } from './sources.js';
import { ManualRequestSource, UpdateEngineSource } from './update-sources.js';

/** Extra run-time options that are not part of the operator's config. */
export interface RunOptions {
  logger?: Logger;
  /** Follow no update sources: only recover (post-check and release after a reboot). */
  noSources?: boolean;
  bootIdFile?: string;
  retryDelayMs?: number;
  /** Where the machine's product UUID is read, to notice a token file cloned with a machine. */
  machineUuidFile?: string;
  /** The clock, for tests; default the system's. */
  now?: () => Date;
  /** The program, as the agent's start and stop lines name it. Default `sluiced`. */
  program?: string;
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

/**
 * The agent's logger: pino JSON lines with the node on each, and `time` in ISO-8601 UTC as
 * journald and log shippers read it (`2026-12-01T15:34:00.123Z`). To stdout unless `destination`
 * (a file descriptor) says otherwise.
 */
export function agentLogger(config: AgentConfig, destination?: number): Logger {
  const options = {
    level: config.log.level,
    base: { node: config.node.id },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination === undefined ? pino(options) : pino(options, pino.destination(destination));
}

/** Starts an agent for `config`. Rejects on an error a restart cannot fix (bad TLS files). */
export async function startAgent(
  config: AgentConfig,
  opts: RunOptions = {},
): Promise<RunningAgent> {
  // Before anything else: without a boot id the agent must not run at all (exit 2).
  const bootId = await readBootId(opts.bootIdFile);
  const logger = opts.logger ?? agentLogger(config);
  logger.info({ config: redactConfig(config) }, 'configuration');
  // The node's own window in words, every entry with its zone (and where that zone came from).
  const windows = config.windows.map(formatWindowSpec).join('; ') || 'always';
  logger.info(
    { windows, windowZones: config.windowZones },
    `reboot window of this node: ${windows}`,
  );
  const metrics = new AgentMetrics();
  const server = config.metrics.listen ? await metrics.serve(config.metrics.listen) : null;
  const address = server?.address();
  const metricsAddress =
    address && typeof address === 'object' ? `${address.address}:${address.port}` : null;

  let client: EtcdClient | null = null;
  let semaphore: Semaphore | null = null;
  let settings: EtcdGroupSettings | null = null;
  let registry: NodeRegistry | null = null;
  let clockCheck: (() => Promise<string | null>) | null = null;
  const sources: UpdateSource[] = [];
  const wantSources = !opts.noSources;
  const now = opts.now ?? (() => new Date());
  // This agent's problems by kind (clock, reboot loop), shown together with its registration.
  const problems = new Map<string, string>();
  const reportProblem = (kind: string, problem: string | null): Promise<void> => {
    if (problem) problems.set(kind, problem);
    else problems.delete(kind);
    const all = problems.size > 0 ? [...problems.values()].join('; ') : null;
    return registry?.setProblem(all).catch(() => {}) ?? Promise.resolve();
  };
  /** Hears the semaphore's decisions for notifications, once it exists (see below). */
  let observer: NotifyObserver | null = null;
  const blockers = new BlockerLog(logger, config.node.id);
  if (config.strategy === 'etcd-lock') {
    const { token, created } = await instanceToken(config.node.tokenFile, opts.machineUuidFile);
    if (created) logger.info({ file: config.node.tokenFile }, 'made a new instance token');
    const conn = await connectionOptions(config.etcd);
    client = await connectEtcd(conn);
    let lastSkew: string | null = null;
    clockCheck = async () => {
      const { problem, reading } = await checkClock(conn, config.clock.maxSkewMs, () =>
        now().getTime(),
      );
      if (reading) metrics.clockOffset.set(reading.offsetMs / 1000);
      metrics.clockProblem.set(problem ? 1 : 0);
      if (problem !== lastSkew) {
        if (problem) logger.error({ maxSkewMs: config.clock.maxSkewMs }, problem);
        else if (lastSkew) logger.info("this node's clock agrees with etcd's again");
        lastSkew = problem;
        await reportProblem('clock', problem);
      }
      return problem;
    };
    registry = new NodeRegistry(
      client,
      new GroupKeys(config.etcd.prefix, config.etcd.group),
      {
        node: config.node.id,
        hostname: config.node.hostname,
        bootId,
        token,
        agentVersion: AGENT_VERSION,
        startedAt: now().toISOString(),
        ...(config.node.domain === null ? {} : { domain: config.node.domain }),
        ...(await osVersion()),
      },
      config.etcd.sessionTTL,
    );
    semaphore = new Semaphore(client, {
      node: config.node.id,
      hostname: config.node.hostname,
      ...(config.node.domain === null ? {} : { domain: config.node.domain }),
      token,
      clockCheck,
      now,
      prefix: config.etcd.prefix,
      group: config.etcd.group,
      sessionTTL: config.etcd.sessionTTL,
      holdTTL: config.etcd.holdTTL,
      localWindows: config.windows,
      onDecision: (decision) => {
        // The group as this node's mirror has it: for the log and notifications, not admission.
        const view = semaphore?.groupView();
        if (!view) return;
        blockers.decision(decision, view);
        observer?.decision(decision, view);
        // The group's mirror saw the window shut while this node waits: make sure the agent's
        // own watch of the window saw it too (one watch may miss an event the other got), so
        // the node gives up its place now rather than at the window mirror's next self-check.
        if (decision.kind === 'wait' && decision.reason === 'window-closed') {
          settings?.recheckWindow();
        }
      },
      onRequeued: (lost) =>
        logger.warn(
          { key: lost.key, createRevision: lost.createRevision },
          "lost this node's place in the queue (its session lease ran out while the agent was cut off from etcd or paused, or the key was deleted); queued again at the back",
        ),
      onRetry: (error) => {
        metrics.etcdErrors.inc();
        logger.warn({ err: describeError(error) }, 'etcd error while waiting for a slot; retrying');
      },
    });
    settings = new EtcdGroupSettings(client, semaphore.keys, config.node.id, {
      onInvalidWindow: (message) =>
        logger.error({ err: message }, 'group window is invalid; not rebooting'),
      onReadError: (error) => {
        metrics.etcdErrors.inc();
        logger.warn({ err: describeError(error) }, 'cannot read the group window from etcd');
      },
      onFollowError: (error) =>
        logger.warn({ err: describeError(error) }, 'cannot watch the group window'),
    });
    const waiting = semaphore;
    metrics.queuePositionSource = () => waiting.position();
    if (wantSources && config.sources.manual) {
      sources.push(new ManualRequestSource(settings));
    }
  }
  // Notifications, when webhooks are configured: what the agent observes, claimed in etcd (with
  // the etcd-lock strategy) so that each event is sent once fleet-wide, and sent without ever
  // holding up the lifecycle.
  const keys = new GroupKeys(config.etcd.prefix, config.etcd.group);
  const notifyStore = client ? new EtcdNotifyStore(client, keys) : null;
  const notifier =
    config.notify.webhooks.length > 0
      ? new Notifier({
          settings: config.notify,
          store: notifyStore,
          keys,
          node: config.node.id,
          logger,
          onOutcome: (event, outcome) => metrics.notifications.inc({ event, outcome }),
        })
      : null;
  if (notifier) {
    observer = new NotifyObserver({
      notifier,
      store: notifyStore,
      keys,
      node: config.node.id,
      logger,
    });
  }
  if (wantSources && config.sources.updateEngine) {
    sources.push(
      new UpdateEngineSource(config.dbus.address, (error) => {
        metrics.dbusErrors.inc();
        logger.warn({ err: error.message }, 'update_engine connection problem');
      }),
    );
  }
  if (wantSources) {
    sources.push(
      ...osSources(config, (source, error) => {
        metrics.dbusErrors.inc();
        logger.warn({ source, err: error.message }, `${source} connection problem`);
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
    lock: semaphore,
    settings,
    registration: registry,
    clockCheck,
    now,
    sources,
    logger,
    metrics,
    bootId,
    // Kept next to the instance token: it must outlast the reboots it counts.
    rebootGuard: new RebootLoopGuard(
      join(dirname(config.node.tokenFile), 'reboot-loop.json'),
      config.reboot.loopLimit,
    ),
    reportProblem: (kind, problem) => void reportProblem(kind, problem),
    ...(opts.retryDelayMs !== undefined ? { retryDelayMs: opts.retryDelayMs } : {}),
    ...(opts.program ? { program: opts.program } : {}),
  });
  // The agent is meant to run until stopped, even while nothing else keeps the event loop busy
  // (a sentinel-only agent with metrics off): a handle that keeps the process alive, so it
  // never exits 0 on its own and the unit's restart policy never has to guess.
  const alive = setInterval(() => {}, 2 ** 30);
  metrics.info.set({ node: config.node.id, group: config.etcd.group }, 1);
  let previous = agent.state.name;
  agent.onTransition((state, edge) => {
    metrics.observe(state, previous, new Date());
    previous = state.name;
    observer?.transition(state, edge);
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
      clearInterval(alive);
      await agent.stop();
      await notifier?.close();
      client?.close();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    },
  };
}

/** This agent's version, from its package.json (inlined by the bundle). */
const AGENT_VERSION: string = (() => {
  try {
    return (
      JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
        version: string;
      }
    ).version;
  } catch {
    return 'unknown';
  }
})();

/** The OS version from /etc/os-release (VERSION, else VERSION_ID), when there is one. */
async function osVersion(): Promise<{ osVersion?: string }> {
  try {
    const text = await readFile('/etc/os-release', 'utf8');
    const field = (name: string) =>
      new RegExp(`^${name}=["']?([^"'\n]*)`, 'm').exec(text)?.[1]?.trim() || undefined;
    const name = field('NAME');
    const version = field('VERSION') ?? field('VERSION_ID');
    if (!version) return {};
    return { osVersion: name ? `${name} ${version}` : version };
  } catch {
    return {};
  }
}
