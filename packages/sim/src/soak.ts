/**
 * One chaos run: a short rollout of real `sluiced` processes against a 3-member etcd, under a
 * seeded schedule of faults, then a check of every invariant (invariants.ts) by the simulator's
 * own watchers and reboot log. The CLI that runs many of them is chaos.ts.
 *
 * The faults, each counted per run:
 *
 * - agents: SIGKILL in any state (restarted as systemd would); SIGSTOP in any state for less than
 *   the session lease, for longer, and for longer than the hold lease, then SIGCONT;
 * - each agent's own link to etcd (a fault proxy per member): connection resets, cuts shorter and
 *   longer than the session lease (often after a reset, so the agent reconnects and catches up),
 *   and added latency of hundreds of ms to seconds per direction;
 * - write bursts of more than 1000 revisions under the group prefix within a second or two (reboot
 *   requests for nodes that do not exist), also timed inside a waiter's cut link, so that its watch
 *   catches up in responses of at most 1000 revisions after its session lease ran out;
 * - a cloned machine: a second machine whose agent has another node's id, with or without an
 *   update of its own;
 * - clock offsets on one agent (libfaketime), a few seconds or hours, with group windows that are
 *   open only on the offset clock;
 * - operator actions: `sluicectl unlock --force` of a holder, max set to 0 and back, max edits,
 *   pause and resume (with sluicectl or etcd), window edits (open, shut, closing within seconds);
 * - etcd: leader and follower kills, one member cut off from its peers (peer traffic runs through
 *   proxies), and whole-cluster outages.
 *
 * When the faults stop, everything is healed, the run checks that a lost holder beyond the loss
 * budget has halted the group (liveness, with a grace period), then acts as the operator would
 * (force-unlocks lost nodes, resumes) and waits for the rollout to finish. A run that does not
 * finish counts as a failure as much as a broken invariant.
 *
 * Why one file: a run's fault schedule is one seeded sequence; each fault's injection, its heal
 * and what it leaves for the checks sit side by side, so that a seed reads as it replays.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { Fleet, within } from './fleet.js';
import { formatReport, type Violation } from './invariants.js';
import { PeerNet } from './links.js';
import { LIBFAKETIME, type SimNode } from './node.js';
import { Random } from './random.js';
import { simClientOptions } from './timeline.js';

/** Every kind of fault a run may apply. */
export const FAULT_KINDS = [
  'agent-kill',
  'link-reset',
  'link-cut-short',
  'link-cut-long',
  'link-latency',
  'burst',
  'cut-burst',
  'freeze-short',
  'freeze-long',
  'freeze-hold',
  'clone',
  'clock-small',
  'clock-large',
  'window',
  'force-unlock',
  'max',
  'max-zero',
  'pause',
  'leader-kill',
  'follower-kill',
  'member-isolate',
  'outage',
] as const;

/** A kind of fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/** How often each fault is picked in a random schedule (relative weights). */
const WEIGHTS: Record<FaultKind, number> = {
  'agent-kill': 8,
  'link-reset': 5,
  'link-cut-short': 4,
  'link-cut-long': 5,
  'link-latency': 5,
  burst: 2,
  'cut-burst': 7,
  'freeze-short': 3,
  'freeze-long': 3,
  'freeze-hold': 1,
  clone: 2,
  'clock-small': 1.5,
  'clock-large': 2,
  window: 5,
  'force-unlock': 2.5,
  max: 6,
  'max-zero': 2.5,
  pause: 4,
  'leader-kill': 2.5,
  'follower-kill': 2.5,
  'member-isolate': 3,
  outage: 1,
};

/** A lane: a 3-member etcd whose peer traffic runs through a {@link PeerNet}, for many runs. */
export interface ChaosLane {
  etcd: EtcdCluster;
  peers: PeerNet;
  stop(): Promise<void>;
}

/** Starts a lane. */
export async function startLane(): Promise<ChaosLane> {
  const peers = new PeerNet();
  let etcd: EtcdCluster;
  try {
    etcd = await startEtcd({ members: 3, peerRoute: peers.route });
  } catch (error) {
    await peers.stop();
    throw error;
  }
  return {
    etcd,
    peers,
    stop: async () => {
      await etcd.stop();
      await peers.stop();
    },
  };
}

/** The outcome of one chaos run. */
export interface ChaosResult {
  run: number;
  seed: number;
  nodes: number;
  max: number;
  lossBudget: number;
  /** Failure domains the nodes were in (domain-max 1), when the run had them. */
  domains?: number;
  rebootSeconds: number;
  /** How often each fault was applied. */
  faults: Partial<Record<FaultKind, number>>;
  /** What the simulated operator did once the faults stopped (force-unlocks, resumes). */
  cleanup: Record<string, number>;
  /** Revisions written by bursts. */
  burstRevisions: number;
  /** Bursts that got fewer than 1000 revisions through (etcd was down meanwhile). */
  shortBursts: number;
  reboots: number;
  finished: boolean;
  violations: Violation[];
  notes: string[];
  ms: number;
  /** The fleet's state when the run did not finish. */
  stuck?: string;
  /** Set when the harness itself could not carry the run out (the run says nothing of sluice). */
  harnessError?: boolean;
  /** The run's directory, kept (agent logs) when the run failed. */
  dir?: string;
}

/** Options of one run. */
export interface ChaosRunOptions {
  lane: ChaosLane;
  run: number;
  seed: number;
  /** The `sluiced` program the nodes run (see `agentProgram`); default the built agent. */
  agent?: string;
  /** How long to inject faults, in ms. Default 12 s. */
  faultMs?: number;
  /**
   * Give up on the rollout after this long once faults stop. Default 120 s: a waiter that missed
   * an event is woken by its backstop within 78 s (60 s, jittered ±30 %).
   */
  finishTimeoutMs?: number;
  /**
   * How long a lost holder beyond the budget may go without a halt while someone waits. Default
   * 80 s: the waiters' backstop bound.
   */
  haltGraceMs?: number;
  /**
   * `random`: faults drawn by weight. `every`: each kind once, in a seeded order (for up to twice
   * the fault time), then random ones until the fault time is over (for a short smoke that
   * exercises every fault).
   */
  mix?: 'random' | 'every';
  /** Keep the run's directory (agent logs) when it fails. Default true. */
  keepFailed?: boolean;
  /**
   * Put the nodes in 2 or 3 failure domains with `domain-max` 1, so that the checker also counts
   * holders and nodes down per domain (and nodes may pass one its domain holds back). Default off.
   */
  domains?: boolean;
  log?: (line: string) => void;
}

const SESSION_TTL = 2;
const HOLD_TTL = 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `predicate()` holds or `ms` have passed; true if it held. */
async function until(predicate: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

/** True when `p` succeeds within `ms`. */
async function succeeds(p: Promise<unknown>, ms: number): Promise<boolean> {
  return (
    (await within(
      p.then(() => true),
      ms,
    )) === true
  );
}

/** Runs an etcd call until it succeeds (the client's circuit breaker may be open after faults). */
async function persist<T>(what: string, fn: () => Promise<T>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what}: ${String(error)}`);
      await sleep(200);
    }
  }
}

/** The index of the member that is leader now, or -1 when none says so. */
async function leaderOf(etcd: EtcdCluster): Promise<number> {
  for (const [i, member] of etcd.members.entries()) {
    if (!member.running) continue;
    if ((await etcd.metric('etcd_server_is_leader', i).catch(() => 0)) === 1) return i;
  }
  return -1;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** A one-entry window spec starting at `start` (floored to the minute) for `minutes`, in UTC. */
function windowAt(start: number, minutes: number): string {
  const d = new Date(Math.floor(start / 60_000) * 60_000);
  const hh = String(d.getUTCHours()).padStart(2, '0');
  const mm = String(d.getUTCMinutes()).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]} ${hh}:${mm}+${minutes}m UTC`;
}

/** One rollout under a seeded fault schedule. Leaves the lane's etcd healthy. */
export async function chaosRun(opts: ChaosRunOptions): Promise<ChaosResult> {
  if (!existsSync(LIBFAKETIME)) {
    // Without it the clock faults would do nothing and the soak would pass without them.
    throw new Error(`${LIBFAKETIME} is missing: install Debian's faketime (scripts/bootstrap.mjs)`);
  }
  const random = new Random(opts.seed);
  const { etcd, peers } = opts.lane;
  const started = Date.now();
  const nodes = random.int(3, 5);
  const max = random.int(1, 3);
  const lossBudget = random.chance(0.25) ? 1 : 0;
  // Mostly short reboots; some long enough that a node admitted during another's partition is
  // still down when that partition heals.
  const rebootSeconds =
    Math.round((random.chance(0.6) ? random.between(0.2, 0.8) : random.between(1.5, 3)) * 10) / 10;
  // Drawn only with domains on, so that the schedules of other runs stay as they were.
  const domains = opts.domains ? random.int(2, 3) : undefined;
  const faults: Partial<Record<FaultKind, number>> = {};
  const cleanup: Record<string, number> = {};
  const count = (kind: FaultKind) => {
    faults[kind] = (faults[kind] ?? 0) + 1;
  };
  const cleaned = (what: string) => {
    cleanup[what] = (cleanup[what] ?? 0) + 1;
  };
  let burstRevisions = 0;
  /** Bursts that wrote fewer than 1000 revisions (etcd was down or cut off meanwhile). */
  let shortBursts = 0;
  await heal();
  const dir = await mkdtemp(join(tmpdir(), `sluice-chaos-${opts.seed}-`));
  const fleet = await Fleet.start({
    etcd,
    nodes,
    max,
    lossBudget,
    rebootSeconds,
    ...(domains === undefined ? {} : { domains, domainMax: 1 }),
    sessionTTL: SESSION_TTL,
    holdTTL: HOLD_TTL,
    retryDelay: '300ms',
    prefix: `/chaos-${opts.seed}/`,
    logLevel: 'info',
    random,
    links: true,
    fakeClocks: true,
    dir,
    ...(opts.agent ? { agent: opts.agent } : {}),
  });
  const client = new Etcd3(simClientOptions(etcd.endpoints));
  const pending = new Set<Promise<unknown>>();
  const later = (ms: number, fn: () => unknown) => {
    const p = sleep(ms)
      .then(fn)
      .catch(() => {});
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  /**
   * A settings write of a fault: true if it succeeded within `ms`. One that takes longer (etcd is
   * down) may still land later, so it stays pending: the faults are over only once it settled.
   */
  const write = (p: Promise<unknown>, ms: number): Promise<boolean> => {
    const settled = p.catch(() => {});
    pending.add(settled);
    void settled.finally(() => pending.delete(settled));
    return succeeds(p, ms);
  };
  /**
   * Reads the settings back until they are as the faults must leave them (max as at the start,
   * no window, no pause of the schedule's own; a halt stays for the operator), twice in a row.
   */
  const settleSettings = async () => {
    const read = (key: string) => persist(`a read of ${key}`, () => client.get(key).string());
    for (let stable = 0, i = 0; stable < 2 && i < 40; i++) {
      const [m, w, p] = await Promise.all([
        read(fleet.keys.max),
        read(fleet.keys.windows),
        read(fleet.keys.paused),
      ]);
      const ours = p === 'chaos' || Boolean(p?.includes('"reason":"chaos"'));
      if (m === String(max) && w === null && !ours) {
        stable++;
      } else {
        stable = 0;
        if (m !== String(max)) await persist('max', () => fleet.setMax(max));
        if (w !== null) await persist('window', () => fleet.setWindow(null, 'client'));
        if (ours) await persist('resume', () => client.delete().key(fleet.keys.paused).exec());
      }
      await sleep(300);
    }
  };
  const faultMs = opts.faultMs ?? 12_000;
  /** Member faults are one at a time (an outage is one too). */
  let memberFault = false;
  /** The one machine whose clock may be set off in this run. */
  const skewed = random.pick(fleet.nodes);
  let bursts = 0;
  let finished = false;
  let keep = false;
  let stuck: string | undefined;
  const extra: Violation[] = [];

  async function heal(): Promise<void> {
    peers.heal();
    await Promise.all(etcd.members.filter((m) => !m.running).map((m) => m.start()));
  }

  const upMachines = () => fleet.machines.filter((n) => n.machine === 'up' && !n.frozen);
  const running = () => upMachines().filter((n) => n.agentRunning);
  /**
   * A running agent, preferring those in `states` with probability `bias`. Clones are left to
   * link faults (`clones`): killed or stopped they would seldom get far enough to matter.
   */
  const pickAgent = (states: readonly string[], bias: number, clones = false): SimNode | null => {
    const all = running().filter((n) => clones || !fleet.clones.includes(n));
    if (all.length === 0) return null;
    const preferred = all.filter((n) => states.includes(n.agentState));
    return preferred.length > 0 && random.chance(bias) ? random.pick(preferred) : random.pick(all);
  };
  const HOLDER_STATES = ['holding', 'draining', 'rebooting', 'recovering', 'post-checking'];

  /** Writes `n` reboot requests for nodes that do not exist: one revision each. */
  const burst = async (n: number): Promise<number> => {
    const tag = `ghost-${opts.seed}-${++bursts}-`;
    let next = 0;
    let written = 0;
    // A write that fails (etcd is down or has no leader) is tried again until the deadline.
    const deadline = Date.now() + 10_000;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < n && Date.now() < deadline) {
          const i = next++;
          const key = fleet.keys.request(`${tag}${i}`);
          const value = JSON.stringify({
            v: 1,
            node: `${tag}${i}`,
            reason: 'chaos burst',
            requestedAt: new Date().toISOString(),
            by: 'chaos',
          });
          while (Date.now() < deadline) {
            if (await succeeds(client.put(key).value(value).exec(), 2000)) {
              written++;
              break;
            }
            await sleep(100);
          }
        }
      }),
    );
    burstRevisions += written;
    if (written < 1000) shortBursts++;
    fleet.note('burst', undefined, `${written} revisions under ${fleet.keys.requestsPrefix}`);
    later(random.between(1000, 4000), async () => {
      await persist('burst cleanup', () => client.delete().prefix(fleet.keys.request(tag)).exec());
    });
    return written;
  };

  /** Cuts a link for `ms`, after a reset with probability `resetFirst`. */
  const cut = (node: SimNode, ms: number, resetFirst: number) => {
    const link = fleet.link(node.id);
    if (random.chance(resetFirst)) link.reset();
    link.blackhole();
    fleet.note('link-cut', node.id, `${Math.round(ms)} ms in state ${node.agentState}`);
    later(ms, () => {
      link.heal();
      fleet.note('link-heal', node.id);
    });
  };

  /** Applies one fault of `kind`; false when it does not apply right now. */
  const apply = async (kind: FaultKind): Promise<boolean> => {
    switch (kind) {
      case 'agent-kill': {
        const node = pickAgent([], 0);
        if (!node) return false;
        await fleet.killAgent(node.id, { restartAfterMs: Math.round(random.between(100, 1500)) });
        return true;
      }
      case 'link-reset': {
        const node = pickAgent(['queued', ...HOLDER_STATES], 0.6, true);
        if (!node) return false;
        fleet.link(node.id).reset();
        fleet.note('link-reset', node.id, `in state ${node.agentState}`);
        return true;
      }
      case 'link-cut-short': {
        const node = pickAgent(['queued', ...HOLDER_STATES], 0.6, true);
        if (!node) return false;
        cut(node, random.between(300, 1500), 0.5);
        return true;
      }
      case 'link-cut-long': {
        const node = pickAgent(['queued', ...HOLDER_STATES], 0.6, true);
        if (!node) return false;
        cut(node, random.between(SESSION_TTL * 1000 + 500, 6000), 0.7);
        return true;
      }
      case 'link-latency': {
        const node = pickAgent(['queued', ...HOLDER_STATES], 0.6, true);
        if (!node) return false;
        const link = fleet.link(node.id);
        const ms = () => (random.chance(0.3) ? 0 : Math.round(random.between(100, 2500)));
        const latency = { up: ms(), down: ms() };
        link.setLatency(latency);
        fleet.note('link-latency', node.id, `up ${latency.up} ms, down ${latency.down} ms`);
        later(random.between(1000, 4000), () => link.setLatency({ up: 0, down: 0 }));
        return true;
      }
      case 'burst': {
        later(0, () => burst(random.int(1100, 1600)));
        return true;
      }
      case 'cut-burst': {
        // A waiter's link is reset and cut, and a burst lands while it is cut off: when the link
        // heals, its watch catches up in batches of at most 1000 revisions. Either the burst comes
        // at once, or (sharper) only once the waiter's session lease has run out, while the other
        // waiters' writes are slowed so that an admission of theirs commits after the burst: past
        // the first batch the cut-off waiter will see, which already shows its own key gone.
        // Settled waiters first: one cut in the middle of joining gives up its wait (and its
        // stale view) on the error, and starts afresh.
        const settled = running().filter(
          (n) =>
            !fleet.clones.includes(n) &&
            n.agentState === 'queued' &&
            n.agentSince < Date.now() - 1000,
        );
        const node = settled.length > 0 ? random.pick(settled) : pickAgent(['queued'], 0.9);
        if (!node) return false;
        const link = fleet.link(node.id);
        link.reset();
        link.blackhole();
        const expired = random.chance(0.6);
        fleet.note(
          'link-cut',
          node.id,
          `for a burst (${expired ? 'after its key expired' : 'at once'})`,
        );
        later(0, async () => {
          if (expired) {
            const others = running().filter((n) => n !== node && n.agentState === 'queued');
            for (const o of others) {
              fleet.link(o.id).setLatency({ up: Math.round(random.between(1500, 3000)) });
            }
            // Its key gone and a slot free, as far as the simulator's watcher sees.
            const key = fleet.keys.queue(node.nodeId);
            const t = fleet.timeline;
            await until(
              () => t.get(key) === null && t.holders.length < t.max,
              SESSION_TTL * 1000 + 4000,
            );
            await burst(random.int(1100, 1600));
            const markers = fleet.timeline.markers.length;
            await until(() => fleet.timeline.markers.length > markers, 4000);
            await sleep(random.between(100, 800));
            for (const o of others) fleet.link(o.id).setLatency({ up: 0 });
          } else {
            await sleep(random.between(100, 400));
            await burst(random.int(1100, 1600));
            await sleep(random.between(1500, 3500));
          }
          link.heal();
          fleet.note('link-heal', node.id);
        });
        return true;
      }
      case 'freeze-short':
      case 'freeze-long':
      case 'freeze-hold': {
        const node =
          kind === 'freeze-hold' ? pickAgent(HOLDER_STATES, 0.7) : pickAgent(['queued'], 0.3);
        if (!node) return false;
        const ms =
          kind === 'freeze-short'
            ? random.between(300, SESSION_TTL * 1000 - 300)
            : kind === 'freeze-long'
              ? random.between(SESSION_TTL * 1000 + 500, HOLD_TTL * 1000 - 2000)
              : random.between(HOLD_TTL * 1000 + 500, HOLD_TTL * 1000 + 3000);
        fleet.freezeAgent(node.id, `${Math.round(ms)} ms`);
        later(ms, () => fleet.thawAgent(node.id));
        return true;
      }
      case 'clone': {
        // A second machine with a node's id: with an update of its own (both want the slot),
        // or idle and started just as the original goes down to reboot (it finds a record with
        // a boot id not its own). It stays until the faults stop.
        if (fleet.clones.length > 0) return false;
        const of = random.pick(fleet.nodes);
        const staged = of.machine === 'down' ? false : random.chance(0.5);
        later(0, async () => {
          const clone = await fleet.addClone(of.id, { start: staged });
          if (staged) {
            await fleet.stageAll('2.0.0', { nodes: [clone.id] });
            return;
          }
          const start = () => {
            stop();
            void fleet.startAgent(clone.id);
          };
          const stop = fleet.onEvent((e) => {
            if (e.kind === 'down' && e.node === of.id) start();
          });
          // Already down, or done with its reboot: start now, or when it does go down.
          if (of.machine === 'down' || fleet.reboots.some((r) => r.machine === of.id)) start();
          else later(faultMs / 2, start);
        });
        return true;
      }
      case 'clock-small':
      case 'clock-large': {
        if (skewed.machine !== 'up') return false;
        const sign = random.chance(0.5) ? 1 : -1;
        const seconds =
          kind === 'clock-small'
            ? sign * Math.round(random.between(1, 3))
            : random.pick([2 * 3600, -2 * 3600, 12 * 3600]);
        await fleet.setClock(skewed.id, seconds);
        const ms = random.between(3000, 8000);
        later(ms, () => fleet.setClock(skewed.id, 0));
        // Mostly with a group window open only on the offset clock: a node that trusts its own
        // clock then reboots outside the window everyone else keeps.
        if (kind === 'clock-large' && random.chance(0.7)) {
          const spec = windowAt(Date.now() + seconds * 1000 - 600_000, 40);
          if (await write(fleet.setWindow(spec, 'client'), 5000)) {
            fleet.note('window-kind', undefined, 'offset-only (with the clock)');
            later(ms, () => write(fleet.setWindow(null, 'client'), 5000));
          }
        }
        return true;
      }
      case 'window': {
        const now = Date.now();
        const offset = skewed.clockOffset * 1000;
        const choices: [string, string][] = [
          // Open for hours around now.
          ['open', windowAt(now - 3_600_000, 180)],
          // Shut now and for hours (it opens 12 h from now).
          ['shut', windowAt(now + 12 * 3_600_000, 1)],
          // Open now, shutting at the next full minute that is at least 5 s away.
          ['closing', closingWindow(now)],
        ];
        // Open on the offset clock only, shut on every other.
        if (Math.abs(offset) >= 3_600_000) {
          choices.push(['offset-only', windowAt(now + offset - 600_000, 40)]);
        }
        // An offset clock is what the offset-only window is for: prefer it while there is one.
        const [what, spec] =
          choices.length > 3 && random.chance(0.7) ? choices[3]! : random.pick(choices);
        const via = random.chance(0.2) ? 'sluicectl' : 'client';
        if (!(await write(fleet.setWindow(spec, via), 5000))) return false;
        fleet.note('window-kind', undefined, what);
        later(random.between(1000, 5000), () => write(fleet.setWindow(null, 'client'), 5000));
        return true;
      }
      case 'force-unlock': {
        const holders = fleet.timeline.holders;
        if (holders.length === 0) return false;
        const node = random.pick(holders);
        later(0, () => fleet.forceUnlock(node));
        return true;
      }
      case 'max': {
        return write(fleet.setMax(random.int(1, 3)), 2000);
      }
      case 'max-zero': {
        if (!(await write(fleet.setMax(0), 2000))) return false;
        later(random.between(500, 3000), () => persist('max back', () => fleet.setMax(max)));
        return true;
      }
      case 'pause': {
        const viaCtl = random.chance(0.3);
        const pause = viaCtl
          ? fleet.pause('chaos')
          : client.put(fleet.keys.paused).value('chaos').exec();
        if (!(await write(pause, 5000))) return false;
        if (!viaCtl) fleet.note('pause', undefined, 'chaos');
        later(random.between(300, 1500), async () => {
          // Resume only our own pause: a halt for a lost holder stays for the operator.
          const value = await persist('paused read', () => client.get(fleet.keys.paused).string());
          if (value === 'chaos' || value?.includes('"reason":"chaos"')) {
            await persist('resume', () => client.delete().key(fleet.keys.paused).exec());
            fleet.note('resume');
          }
        });
        return true;
      }
      case 'leader-kill':
      case 'follower-kill': {
        if (memberFault || etcd.members.some((m) => !m.running)) return false;
        const leader = await leaderOf(etcd);
        if (leader < 0) return false;
        const index =
          kind === 'leader-kill'
            ? leader
            : random.pick(etcd.members.map((_, i) => i).filter((i) => i !== leader));
        const member = etcd.members[index]!;
        memberFault = true;
        fleet.note('etcd-member-kill', undefined, `${member.name} (${kind.split('-')[0]})`);
        await member.kill();
        later(random.between(300, 2000), async () => {
          await member.start();
          memberFault = false;
          fleet.note('etcd-member-start', undefined, member.name);
        });
        return true;
      }
      case 'member-isolate': {
        if (memberFault || etcd.members.some((m) => !m.running)) return false;
        const leader = await leaderOf(etcd);
        const index = leader >= 0 && random.chance(0.5) ? leader : random.int(0, 2);
        const member = etcd.members[index]!;
        memberFault = true;
        peers.isolate(member.name);
        fleet.note('etcd-member-isolated', undefined, member.name);
        later(random.between(1000, 6000), () => {
          peers.rejoin(member.name);
          memberFault = false;
          fleet.note('etcd-member-rejoined', undefined, member.name);
        });
        return true;
      }
      case 'outage': {
        if (memberFault || etcd.members.some((m) => !m.running)) return false;
        memberFault = true;
        fleet.note('etcd-down', undefined, 'every member killed');
        await Promise.all(etcd.members.map((m) => m.kill()));
        later(random.between(500, 3000), async () => {
          await heal();
          memberFault = false;
          fleet.note('etcd-up');
        });
        return true;
      }
    }
  };

  try {
    const faultUntil = Date.now() + faultMs;
    // Updates arrive over the first half of the faults, so nodes join the queue at any moment
    // (also right after a burst, while another waiter is cut off).
    later(0, () => fleet.stageAll('2.0.0', { spreadMs: faultMs / 2, random }));
    const order = opts.mix === 'every' ? random.shuffle(FAULT_KINDS) : [];
    const kinds = FAULT_KINDS.filter((k) => WEIGHTS[k] > 0);
    const total = kinds.reduce((sum, k) => sum + WEIGHTS[k], 0);
    const draw = (): FaultKind => {
      let roll = random.next() * total;
      for (const k of kinds) {
        roll -= WEIGHTS[k];
        if (roll < 0) return k;
      }
      return kinds.at(-1)!;
    };
    // With `every`, the faults go on (up to twice as long) until each kind was applied once.
    const hardStop = faultUntil + faultMs;
    while (Date.now() < faultUntil || (order.length > 0 && Date.now() < hardStop)) {
      await sleep(order.length > 0 ? random.between(100, 300) : random.between(150, 600));
      const kind = order.length > 0 ? order[0]! : draw();
      if (await apply(kind).catch(() => false)) {
        count(kind);
        if (order[0] === kind) order.shift();
      } else if (order[0] === kind) {
        // Not possible right now (no waiter, a member already down): try it again later.
        order.push(order.shift()!);
      }
    }

    // The faults stop: heal everything they broke.
    await Promise.all(pending);
    await heal();
    for (const node of fleet.machines) fleet.link(node.id).clear();
    fleet.thawAll();
    await Promise.all(
      fleet.machines.filter((n) => n.clockOffset !== 0).map((n) => fleet.setClock(n.id, 0)),
    );
    for (const clone of [...fleet.clones]) await fleet.removeClone(clone.id);
    // On a starved machine the healed cluster may take a while to elect a leader and serve again.
    await persist('window', () => fleet.setWindow(null, 'client'), 120_000);
    await persist('max', () => fleet.setMax(max), 120_000);
    await Promise.all(pending);
    await settleSettings();

    const halt = await checkHalted(fleet, lossBudget, opts.haltGraceMs ?? 80_000);
    if (halt) extra.push(halt);

    // The operator: force-unlocks lost nodes, resumes, and waits for the rollout.
    const deadline = Date.now() + (opts.finishTimeoutMs ?? 120_000);
    while (!fleet.rolloutDone('2.0.0') && Date.now() < deadline) {
      for (const node of fleet.timeline.lost) {
        cleaned('unlock-lost');
        await fleet.forceUnlock(node);
      }
      // A fault's write of max that timed out may still commit later (etcd can apply a proposal
      // after its client gave up, say once an isolated member is back): put max right again.
      const maxNow = await within(client.get(fleet.keys.max).string(), 2000);
      if (maxNow !== undefined && maxNow !== String(max)) {
        cleaned('max-restore');
        await succeeds(fleet.setMax(max), 2000);
      }
      const paused = await within(client.get(fleet.keys.paused).string(), 2000);
      if (paused) {
        const lost = fleet.timeline.lost.length;
        if (lost === 0) {
          cleaned('resume');
          await succeeds(client.delete().key(fleet.keys.paused).exec(), 2000);
          fleet.note('resume', undefined, 'operator, after the faults');
        }
      }
      await sleep(500);
    }
    finished = fleet.rolloutDone('2.0.0');
    if (finished) fleet.note('rollout-done', undefined, '2.0.0');
    else stuck = fleet.describe();
    await fleet.settle().catch(() => {});
    // The lane's etcd may still be electing a leader after the last faults: wait it out (a run
    // whose rollout finished must not count as unfinished for a read of the harness's own).
    const leftover = finished
      ? await persist('leftover', () => fleet.leftoverSlots(), 120_000)
      : [];
    const report = fleet.check({ complete: finished, leftover });
    report.violations.push(...extra);
    report.ok = report.violations.length === 0;
    const failed = !report.ok || !finished;
    if (failed) opts.log?.(formatReport(report, started));
    keep = failed && opts.keepFailed !== false;
    if (keep) {
      // What the simulator did and saw, next to the agents' logs.
      const lines = fleet.events.map(
        (e) =>
          `+${((e.at - started) / 1000).toFixed(3)}s ${e.kind}${e.node ? ` ${e.node}` : ''}${e.detail ? `: ${e.detail}` : ''}`,
      );
      await writeFile(join(dir, 'events.txt'), `${lines.join('\n')}\n`);
    }
    return {
      run: opts.run,
      seed: opts.seed,
      nodes,
      max,
      lossBudget,
      ...(domains === undefined ? {} : { domains }),
      rebootSeconds,
      faults,
      cleanup,
      burstRevisions,
      shortBursts,
      reboots: report.reboots,
      finished,
      violations: report.violations,
      notes: report.notes,
      ms: Date.now() - started,
      ...(stuck ? { stuck } : {}),
      ...(failed && opts.keepFailed !== false ? { dir } : {}),
    };
  } finally {
    await Promise.all(pending);
    client.close();
    await fleet.stop();
    if (!keep) await rm(dir, { recursive: true, force: true });
  }
}

/** A window spec open now that shuts at the next full minute at least 5 s away. */
function closingWindow(now: number): string {
  let end = Math.ceil(now / 60_000) * 60_000;
  if (end - now < 5000) end += 60_000;
  return windowAt(end - 10 * 60_000, 10);
}

/**
 * A lost holder beyond the loss budget must halt the group: once the faults are over and some
 * node still waits, `paused` must appear within `graceMs`. Returns the violation, or null.
 */
async function checkHalted(
  fleet: Fleet,
  lossBudget: number,
  graceMs: number,
): Promise<Violation | null> {
  const t = fleet.timeline;
  const due = () => t.lost.length > lossBudget && t.paused === null;
  const waiters = () => t.queue().some((q) => !q.holding);
  const deadline = Date.now() + graceMs;
  while (due() && waiters() && Date.now() < deadline) await sleep(100);
  if (!due() || !waiters()) return null;
  return {
    check: 'halt',
    node: t.lost[0] ?? null,
    revision: t.revision,
    at: Date.now(),
    message: `${t.lost.join(', ')} lost beyond the loss budget ${lossBudget} while ${t
      .queue()
      .filter((q) => !q.holding)
      .map((q) => q.node)
      .join(', ')} waited, and nobody halted the group within ${graceMs / 1000} s`,
  };
}
