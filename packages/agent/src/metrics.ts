/**
 * The agent's Prometheus metrics (prom-client), served on loopback at /metrics, with /healthz.
 */
import { createServer, type Server } from 'node:http';
import { type AgentState, STATE_NAMES, type StateName } from '@sluice/core';
import { Counter, Gauge, Registry } from 'prom-client';

/** Every metric the agent exports. One instance per agent. */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly state = new Gauge({
    name: 'sluice_agent_state',
    help: 'The lifecycle state the agent is in (1 for the current state, 0 for the others)',
    labelNames: ['state'],
    registers: [this.registry],
  });
  readonly stateSince = new Gauge({
    name: 'sluice_agent_state_since_timestamp_seconds',
    help: 'When the agent entered its current lifecycle state (Unix time)',
    registers: [this.registry],
  });
  readonly postChecksFailing = new Gauge({
    name: 'sluice_agent_post_checks_failing',
    help: '1 while post-reboot checks keep failing past their deadline (the slot is kept)',
    registers: [this.registry],
  });
  readonly info = new Gauge({
    name: 'sluice_agent_info',
    help: "Always 1; the labels name this agent's node and group",
    labelNames: ['node', 'group'],
    registers: [this.registry],
  });
  readonly transitions = new Counter({
    name: 'sluice_agent_transitions_total',
    help: 'Lifecycle transitions taken, by edge and target state',
    labelNames: ['edge', 'to'],
    registers: [this.registry],
  });
  /** Where the queue position comes from when scraped (the waiting semaphore), if anywhere. */
  queuePositionSource: (() => number | null) | null = null;
  readonly queuePosition = new Gauge({
    name: 'sluice_agent_queue_position',
    help: 'Waiters ahead of this node in the queue (0 = next to be admitted), -1 when not queued',
    registers: [this.registry],
    collect: () => {
      // Read at scrape time from the local mirror of the group: exact, and free between scrapes.
      const position = this.queuePositionSource?.() ?? null;
      this.queuePosition.set(position ?? -1);
    },
  });
  readonly slotHeld = new Gauge({
    name: 'sluice_agent_slot_held',
    help: '1 while this node holds a reboot slot',
    registers: [this.registry],
  });
  readonly updateStaged = new Gauge({
    name: 'sluice_agent_update_staged',
    help: '1 while an update source says a reboot is needed',
    registers: [this.registry],
  });
  readonly reboots = new Counter({
    name: 'sluice_agent_reboots_total',
    help: 'Reboots this agent asked for',
    registers: [this.registry],
  });
  readonly checkFailures = new Counter({
    name: 'sluice_agent_check_failures_total',
    help: 'Failed checks, by phase (pre, admitted, post, drain)',
    labelNames: ['phase'],
    registers: [this.registry],
  });
  readonly etcdErrors = new Counter({
    name: 'sluice_agent_etcd_errors_total',
    help: 'etcd calls that failed',
    registers: [this.registry],
  });
  readonly notifications = new Counter({
    name: 'sluice_agent_notifications_total',
    help: 'Notifications by event and outcome: sent, failed, or duplicate (another agent sent it)',
    labelNames: ['event', 'outcome'],
    registers: [this.registry],
  });
  readonly dbusErrors = new Counter({
    name: 'sluice_agent_dbus_errors_total',
    help: 'D-Bus calls and connections that failed',
    registers: [this.registry],
  });

  readonly identityConflict = new Gauge({
    name: 'sluice_agent_identity_conflict',
    help: '1 while another live agent has this node id and this one stays out of the group',
    registers: [this.registry],
  });
  readonly clockProblem = new Gauge({
    name: 'sluice_agent_clock_problem',
    help: "1 while this node's clock is further from etcd's than clock.maxSkew (no admission, no reboot)",
    registers: [this.registry],
  });
  readonly clockOffset = new Gauge({
    name: 'sluice_agent_clock_offset_seconds',
    help: "This node's clock minus etcd's, at the last check, in seconds",
    registers: [this.registry],
  });

  constructor() {
    this.setState('recovering');
    this.slotHeld.set(0);
    this.identityConflict.set(0);
    this.clockProblem.set(0);
    this.postChecksFailing.set(0);
    this.stateSince.set(Date.now() / 1000);
  }

  /** Marks `current` as the state; every other state reads 0. */
  setState(current: StateName): void {
    for (const s of STATE_NAMES) this.state.set({ state: s }, s === current ? 1 : 0);
  }

  /**
   * Follows a transition (the agent calls its transition listeners with each): when the state
   * began, and whether post-reboot checks fail past their deadline.
   */
  observe(state: AgentState, previous: StateName, at: Date): void {
    if (state.name !== previous) this.stateSince.set(at.getTime() / 1000);
    this.postChecksFailing.set(state.name === 'post-checking' && state.failed ? 1 : 0);
  }

  /**
   * Serves /metrics and /healthz on `listen` (`host:port`). Resolves with the server once it is
   * listening; port 0 picks a free port.
   */
  async serve(listen: string): Promise<Server> {
    const at = listen.lastIndexOf(':');
    const host = listen.slice(0, at).replace(/^\[|\]$/g, '');
    const port = Number(listen.slice(at + 1));
    return serveMetrics(() => this.registry.metrics(), this.registry.contentType, host, port);
  }
}

/**
 * Serves `GET /metrics` (the text `metrics()` resolves to, 500 if it fails) and `/healthz` on
 * `host:port`, 404 for anything else. Resolves with the server once it listens; port 0 picks a
 * free port. sluiced's metrics and `sluicectl exporter` both serve through it.
 */
export async function serveMetrics(
  metrics: () => Promise<string>,
  contentType: string,
  host: string,
  port: number,
): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
    } else if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
