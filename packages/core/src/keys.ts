/**
 * The etcd key layout. One prefix (default `/sluice/v1/`) holds every group; everything an agent
 * needs to decide sits under `<prefix>groups/<group>/`, so one range read is one consistent
 * snapshot. History lives outside the group prefix so that snapshots and watches stay small.
 *
 * ```
 * <prefix>groups/<g>/max              "3"   plain decimal, edited with etcdctl
 * <prefix>groups/<g>/paused           reason text; present = no new slots
 * <prefix>groups/<g>/windows          window spec; absent = always open
 * <prefix>groups/<g>/loss-budget      lost holders tolerated before the group halts (default 0)
 * <prefix>groups/<g>/blackouts        dates on which the windows stay shut (freezes, holidays)
 * <prefix>groups/<g>/domain-max       holders allowed per failure domain; absent = no limit
 * <prefix>groups/<g>/admitted         the last admission under domain-max (it serialises them)
 * <prefix>groups/<g>/canary           {"count":K,"soak":"30m"}: canaries per new version; absent = none
 * <prefix>groups/<g>/canary-state     the version being canaried, written by canary admissions
 * <prefix>groups/<g>/canaries/<node>  JSON CanaryRecord of one canary, written with its marker
 * <prefix>groups/<g>/queue/<node>     JSON QueueRecord, on a lease
 * <prefix>groups/<g>/holding/<node>   JSON HoldingMarker, no lease: written at admission
 * <prefix>groups/<g>/requests/<node>  JSON RebootRequest from `sluicectl request-reboot`, on a lease
 * <prefix>groups/<g>/nodes/<node>     JSON NodeRegistration of the live agent, on its lease
 * <prefix>groups/<g>/conflicts/<node> JSON NodeRegistration of a second agent with that id
 * <prefix>history/<g>/<ms>-<node>     JSON HistoryRecord, capped per group
 * ```
 */

/** The default key prefix. */
export const DEFAULT_PREFIX = '/sluice/v1/';

/** The default group name. */
export const DEFAULT_GROUP = 'default';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}$/;

/** True when `name` is usable as a group or node id inside an etcd key. */
export function isValidName(name: string): boolean {
  return NAME.test(name);
}

const DOMAIN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,62}$/;

/**
 * True when `name` is usable as a failure domain (`rack-12`, `eu-west-1b`): up to 63 letters,
 * digits and `._:@-`, starting with a letter or digit.
 */
export function isValidDomain(name: string): boolean {
  return DOMAIN.test(name);
}

/** Ensures the prefix ends with exactly one `/`. */
export function normalizePrefix(prefix: string): string {
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

/** Key builders for one group. Construct once and pass around. */
export class GroupKeys {
  /** `<prefix>groups/<group>/`: range-read and watch this for a snapshot. */
  readonly root: string;
  readonly max: string;
  readonly paused: string;
  readonly windows: string;
  readonly lossBudget: string;
  readonly domainMax: string;
  readonly blackouts: string;
  /**
   * Written by every admission txn while `domain-max` is set, each guarded on its mod revision as
   * read: admissions then commit one at a time, so the counts they were decided on still hold.
   */
  readonly admitted: string;
  /** The canary setting, and the state the canary admissions write (see core/canary.ts). */
  readonly canary: string;
  readonly canaryState: string;
  readonly canariesPrefix: string;
  readonly queuePrefix: string;
  readonly holdingPrefix: string;
  readonly requestsPrefix: string;
  readonly nodesPrefix: string;
  readonly conflictsPrefix: string;
  readonly historyPrefix: string;

  constructor(
    readonly prefix: string,
    readonly group: string,
  ) {
    const p = normalizePrefix(prefix);
    this.root = `${p}groups/${group}/`;
    this.max = `${this.root}max`;
    this.paused = `${this.root}paused`;
    this.windows = `${this.root}windows`;
    this.lossBudget = `${this.root}loss-budget`;
    this.domainMax = `${this.root}domain-max`;
    this.blackouts = `${this.root}blackouts`;
    this.admitted = `${this.root}admitted`;
    this.canary = `${this.root}canary`;
    this.canaryState = `${this.root}canary-state`;
    this.canariesPrefix = `${this.root}canaries/`;
    this.queuePrefix = `${this.root}queue/`;
    this.holdingPrefix = `${this.root}holding/`;
    this.requestsPrefix = `${this.root}requests/`;
    this.nodesPrefix = `${this.root}nodes/`;
    this.conflictsPrefix = `${this.root}conflicts/`;
    this.historyPrefix = `${p}history/${group}/`;
  }

  queue(node: string): string {
    return this.queuePrefix + node;
  }

  holding(node: string): string {
    return this.holdingPrefix + node;
  }

  request(node: string): string {
    return this.requestsPrefix + node;
  }

  /** The record of `node` as a canary. */
  canaryRecord(node: string): string {
    return this.canariesPrefix + node;
  }

  /** Where the live agent of `node` registers itself. */
  registration(node: string): string {
    return this.nodesPrefix + node;
  }

  /** Where a second live agent with the id `node` says that it stays out. */
  conflict(node: string): string {
    return this.conflictsPrefix + node;
  }

  /** A history key that sorts by time: `<ms, 15 digits>-<node>`. */
  history(atMs: number, node: string): string {
    return `${this.historyPrefix}${String(atMs).padStart(15, '0')}-${node}`;
  }

  /**
   * The history key of an operator action: `<ms>-@<action>-<suffix>`. No node id starts with
   * `@`, so it never meets a reboot's key; the suffix keeps two actions in one millisecond apart.
   */
  actionHistory(atMs: number, action: string, suffix: string): string {
    return this.history(atMs, `@${action}-${suffix}`);
  }

  /** The keys whose values steer admission; the admission txn is guarded on all of them. */
  get settings(): readonly string[] {
    return [
      this.max,
      this.paused,
      this.windows,
      this.blackouts,
      this.lossBudget,
      this.domainMax,
      this.canary,
      this.canaryState,
    ];
  }
}

/** The prefix holding every group: list groups by reading its keys. */
export function groupsPrefix(prefix: string): string {
  return `${normalizePrefix(prefix)}groups/`;
}
