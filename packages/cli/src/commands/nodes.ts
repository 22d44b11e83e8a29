/**
 * `sluicectl nodes`: every node of the group, registered agents and nodes in the queue alike,
 * with what each is doing, its OS and agent versions, its last reboot, and any problem: a second
 * agent with its node id (a cloned machine), or a clock too far from etcd's. FleetLock clients
 * (served by sluice-fleetlock) are listed while queued or holding, and after a reboot from history.
 */
import {
  FLEETLOCK_CLIENT,
  FLEETLOCK_TOKEN,
  type GroupSnapshot,
  type HistoryRecord,
} from '@sluice/core';
import { GroupAdmin, readGroup } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';
import { since, table } from '../format.js';

/** One row of `sluicectl nodes -o json`. */
export interface NodeRow {
  node: string;
  hostname: string;
  /** The node's failure domain (`node.domain`), from its registration, record or marker. */
  domain: string | null;
  /** True while the node's agent is registered (alive, holding its node id). */
  registered: boolean;
  /** idle, queued, holding, draining, rebooting, recovering, post-checking, releasing, lost. */
  state: string;
  /** 1-based place among waiters while queued; null otherwise. */
  position: number | null;
  osVersion: string | null;
  agentVersion: string | null;
  bootId: string | null;
  startedAt: string | null;
  /** When the node's last slot ended (released, forced, lost...), from history. */
  lastReboot: { endedAt: string; outcome: string } | null;
  problem: string | null;
  /** `fleetlock` for a FleetLock client served by sluice-fleetlock (it has no agent). */
  client: 'fleetlock' | null;
  /** A second agent with this node id, which stays out of the group. */
  conflict: { hostname: string; bootId: string; startedAt: string } | null;
}

/** The rows for a snapshot and the group's history (newest first). */
export function nodeRows(snapshot: GroupSnapshot, history: readonly HistoryRecord[]): NodeRow[] {
  const names = new Set<string>([
    ...snapshot.nodes.keys(),
    ...snapshot.queue.map((e) => e.node),
    ...snapshot.holding.map((h) => h.node),
    ...snapshot.conflicts.keys(),
    // FleetLock clients register nowhere: their reboots in history are all there is of them.
    ...history.filter((h) => h.client === FLEETLOCK_CLIENT).map((h) => h.node),
  ]);
  const last = new Map<string, HistoryRecord>();
  for (const h of history) if (!last.has(h.node)) last.set(h.node, h);
  const waiters = snapshot.queue.filter((e) => !e.holding && e.record?.state === 'waiting');
  return [...names].sort().map((node) => {
    const reg = snapshot.nodes.get(node) ?? null;
    const entry = snapshot.queue.find((e) => e.node === node);
    const marker = snapshot.holding.find((h) => h.node === node);
    const twin = snapshot.conflicts.get(node) ?? null;
    let state = 'idle';
    let position: number | null = null;
    if (marker?.orphan) state = 'lost';
    else if (entry?.record && entry.record.state !== 'waiting') state = entry.record.state;
    else if (entry?.holding) state = 'holding';
    else if (entry) {
      state = 'queued';
      position = waiters.findIndex((w) => w.node === node) + 1 || null;
    }
    const ended = last.get(node);
    return {
      node,
      hostname: reg?.hostname || entry?.record?.hostname || marker?.marker?.hostname || '',
      domain: reg?.domain ?? entry?.record?.domain ?? marker?.marker?.domain ?? null,
      registered: reg !== null,
      state,
      position,
      osVersion: reg?.osVersion ?? null,
      agentVersion: reg?.agentVersion ?? null,
      bootId: reg?.bootId || null,
      startedAt: reg?.startedAt ?? null,
      lastReboot: ended ? { endedAt: ended.endedAt, outcome: ended.outcome } : null,
      problem: reg?.problem ?? entry?.record?.problem ?? null,
      client:
        entry?.record?.client ??
        (marker?.marker?.token === FLEETLOCK_TOKEN ? FLEETLOCK_CLIENT : null) ??
        last.get(node)?.client ??
        null,
      conflict: twin
        ? { hostname: twin.hostname, bootId: twin.bootId, startedAt: twin.startedAt }
        : null,
    };
  });
}

/** Prints the group's nodes; exit 0 (problems are shown, not failed on). */
export async function nodes(ctx: Context): Promise<number> {
  const client = await ctx.client();
  const keys = await ctx.keys();
  const [snapshot, history] = await Promise.all([
    readGroup(client, keys),
    new GroupAdmin(client, keys).readHistory(500),
  ]);
  const rows = nodeRows(snapshot, history.records);
  if (ctx.json) {
    ctx.outJson({ group: keys.group, nodes: rows });
    return EXIT.ok;
  }
  if (rows.length === 0) {
    ctx.out(`no nodes in group ${keys.group}: no agent is registered and nobody is queued`);
    return EXIT.ok;
  }
  const now = new Date();
  // A DOMAIN column once any node has a failure domain.
  const domains = rows.some((r) => r.domain !== null);
  ctx.out(
    table(
      [
        'NODE',
        'HOSTNAME',
        ...(domains ? ['DOMAIN'] : []),
        'STATE',
        'OS',
        'AGENT',
        'LAST REBOOT',
        'PROBLEM',
      ],
      rows.map((r) => [
        r.node,
        r.hostname || '-',
        ...(domains ? [r.domain ?? '-'] : []),
        `${r.state}${r.position ? ` #${r.position}` : ''}${r.registered ? '' : r.client ? ` (${r.client})` : ' (no agent)'}`,
        r.osVersion ?? '-',
        r.agentVersion ?? '-',
        r.lastReboot ? `${since(r.lastReboot.endedAt, now)} ${r.lastReboot.outcome}` : '-',
        r.conflict
          ? `second agent with this id: ${r.conflict.hostname || 'unknown'} (boot ${r.conflict.bootId || 'unknown'})`
          : (r.problem ?? '-'),
      ]),
    ),
  );
  return EXIT.ok;
}
