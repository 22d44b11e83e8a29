/**
 * Loading: the layers merged and resolved into an `AgentConfig`, with secrets kept out of every
 * error message.
 */
import { hostname as osHostname } from 'node:os';
import {
  type Blackout,
  isSluiceError,
  isValidName,
  MAX_WINDOW_ENTRIES,
  parseBlackouts,
  parseLocksmithWindow,
  parseWindowSpec,
  SluiceError,
  type WeeklyWindow,
  type WindowSpec,
} from '@sluice/core';
import { type EtcdSettings, parseEtcdSettings } from '@sluice/etcd/settings';
import { parseDocument } from 'yaml';
import { defaultTokenFile } from '../identity.js';
import { type LocalZone, localZone } from '../localzone.js';
import { parseUpdateConfs } from '../locksmith.js';
import { checkTemplate, DEFAULT_NOTIFY } from '../notify.js';
import { isLoopback, parseListenAddress, REDACTED } from './describe.js';
import { q } from './fields.js';
import {
  configError,
  envLayer,
  fileLayer,
  flagLayer,
  isPlainObject,
  type LoadOptions,
  mergeOrigins,
  mergeValues,
  NESTING_SCAN_LIMIT,
  nestingBound,
  type Origin,
  parseLayer,
  type RawLayer,
  readCapped,
  readOptional,
  updateConfLayer,
} from './layers.js';
import { ETCD_FIELDS, type LayerValues } from './schema.js';
import {
  type AgentConfig,
  DEFAULT_CONFIG_FILE,
  DEFAULT_MACHINE_ID_FILE,
  DEFAULT_UPDATE_CONF_FILES,
  DEFAULTS,
  OS_DEFAULTS,
  type OsSources,
  type PresetConfig,
  type Strategy,
} from './types.js';

/**
 * Loads the agent configuration from defaults, update.conf, the YAML file, the environment and
 * flags (each overriding the one before; see the module comment). Throws a SluiceError of kind
 * `invalid-config` whose message names the key and where it came from; the password is never
 * part of a message.
 */
export async function loadAgentConfig(opts: LoadOptions = {}): Promise<AgentConfig> {
  const secrets = new Set<string>();
  try {
    const config = await loadLayers(opts, secrets);
    return { ...config, warnings: config.warnings.map((w) => scrub(w, secrets)) };
  } catch (error) {
    if (!isSluiceError(error)) throw error;
    // Whatever went wrong and wherever a secret was pasted, the message does not carry it. A
    // layer that failed may come before the one holding the password: look at all of them.
    await harvestSecrets(opts, secrets);
    // The cause is dropped: it may quote the same values.
    throw new SluiceError(error.kind, scrub(error.message, secrets), error.where);
  }
}

/** Best effort, never throws: the secrets in every file the configuration would be read from. */
async function harvestSecrets(opts: LoadOptions, secrets: Set<string>): Promise<void> {
  const env = opts.env ?? process.env;
  const file = opts.configFile ?? opts.flags?.config ?? (env.SLUICE_CONFIG || DEFAULT_CONFIG_FILE);
  const text = await readCapped(file, file).catch(() => undefined);
  if (text !== undefined && nestingBound(text) <= NESTING_SCAN_LIMIT) {
    try {
      collectSecrets(
        parseDocument(text, { uniqueKeys: false }).toJS({ maxAliasCount: 0 }),
        secrets,
      );
    } catch {
      // Unreadable YAML: its error message quotes nothing from the file.
    }
  }
  for (const path of opts.updateConfFiles ?? DEFAULT_UPDATE_CONF_FILES) {
    const conf = await readCapped(path, path).catch(() => undefined);
    if (conf === undefined) continue;
    const parsed = parseUpdateConfs([{ path, content: conf }]);
    if (parsed.ok) addSecrets(parsed.value.settings.password, true, secrets);
    for (const match of conf.matchAll(/PASSWORD\s*=\s*["']?([^\n"']*)/g)) {
      addSecrets(match[1], true, secrets);
    }
    addSecrets(conf, false, secrets);
  }
}

/** Keys whose values are secrets, wherever they appear in a layer. */
const SECRET_KEY = /pass(word)?|secret|token|credential/i;

/** `user:password@` in a URL, with or without a scheme, valid URL or not. */
const USERINFO = /(?:^|\/\/|\s|["'[,])([^\s/"'[\],]*)@/g;

/** Adds the secrets a value may carry: all of it when `whole`, and any URL credentials. */
export function addSecrets(value: unknown, whole: boolean, secrets: Set<string>): void {
  if (typeof value !== 'string' && typeof value !== 'number') return;
  const text = String(value);
  const candidates: string[] = whole ? [text] : [];
  for (const match of text.matchAll(USERINFO)) {
    const userinfo = match[1] ?? '';
    candidates.push(userinfo);
    const colon = userinfo.indexOf(':');
    if (colon !== -1) candidates.push(userinfo.slice(colon + 1));
  }
  for (const candidate of candidates) {
    // A value that ran to the end of the file (an unclosed quote) is scrubbed line by line too,
    // and a secret with spaces word by word, so no long part of it shows either.
    const words = candidate.split(/\s+/).filter((w) => w.length >= 6);
    for (const piece of [candidate, ...candidate.split(/\r?\n/), ...words]) {
      if (piece.trim().length >= 3) secrets.add(piece.trim());
    }
  }
}

/** Collects secrets from a raw layer: values under secret-looking keys, and URL credentials. */
function collectSecrets(raw: unknown, secrets: Set<string>): void {
  const stack: [unknown, boolean][] = [[raw, false]];
  let budget = 100_000;
  while (stack.length > 0 && budget-- > 0) {
    const [node, secret] = stack.pop()!;
    if (Array.isArray(node)) {
      for (const item of node) stack.push([item, secret]);
    } else if (isPlainObject(node)) {
      for (const [key, value] of Object.entries(node)) {
        addSecrets(key, false, secrets);
        stack.push([value, secret || SECRET_KEY.test(key)]);
      }
    } else {
      addSecrets(node, secret, secrets);
    }
  }
}

/** Replaces every secret in a message, longest first. */
function scrub(text: string, secrets: ReadonlySet<string>): string {
  let out = text;
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  return out;
}

async function loadLayers(opts: LoadOptions, secrets: Set<string>): Promise<AgentConfig> {
  const env = opts.env ?? process.env;
  const flags = opts.flags ?? {};
  for (const [name, value] of Object.entries(env)) {
    addSecrets(value, SECRET_KEY.test(name), secrets);
  }
  collectSecrets(flags, secrets);

  let explicit: Origin | undefined;
  if (opts.configFile !== undefined) {
    explicit = { label: 'the caller', where: opts.configFile };
  } else if (flags.config !== undefined) {
    explicit = { label: 'flag --config', where: '--config' };
  } else if (env.SLUICE_CONFIG) {
    explicit = { label: 'environment SLUICE_CONFIG', where: 'SLUICE_CONFIG' };
  }
  const configFile = opts.configFile ?? flags.config ?? (env.SLUICE_CONFIG || DEFAULT_CONFIG_FILE);

  const layers: RawLayer[] = [];
  const warnings: string[] = [];
  const found = await updateConfLayer(opts.updateConfFiles ?? DEFAULT_UPDATE_CONF_FILES, secrets);
  if (found) {
    layers.push(found.layer);
    warnings.push(...found.warnings);
  }
  const file = await fileLayer(configFile, explicit);
  if (file) layers.push(file);
  layers.push(envLayer(env), flagLayer(flags));
  for (const layer of layers) collectSecrets(layer.raw, secrets);

  let merged: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  for (const layer of layers) {
    const values = parseLayer(layer);
    merged = mergeValues(merged, values as Record<string, unknown>);
    mergeOrigins(origins, layer);
  }
  return resolve(merged as LayerValues, origins, opts, warnings);
}

const DEFAULT_ORIGIN: Origin = { label: 'default', where: 'default' };

/** Turns the merged layers into an `AgentConfig`, with defaults filled in and origins kept. */
export async function resolve(
  m: LayerValues,
  origins: Map<string, Origin>,
  opts: LoadOptions,
  warnings: string[],
): Promise<AgentConfig> {
  const origin = (path: string): Origin => {
    const parts = path.split('.');
    for (let n = parts.length; n > 0; n--) {
      const found = origins.get(parts.slice(0, n).join('.'));
      if (found) return found;
    }
    return DEFAULT_ORIGIN;
  };
  const fail = (path: string, message: string, cause?: unknown) =>
    configError(origin(path), path, message, cause);

  // node
  let id = m.node?.id;
  if (id === undefined) {
    const file = opts.machineIdFile ?? DEFAULT_MACHINE_ID_FILE;
    const machineId = (await readOptional(file).catch(() => undefined))?.trim();
    const hint = 'set node.id in the config file, SLUICE_NODE or --node';
    if (machineId === undefined || machineId === '') {
      throw new SluiceError(
        'invalid-config',
        `node.id: not set, and ${file} is missing or empty; ${hint}`,
        file,
      );
    }
    if (!isValidName(machineId)) {
      throw new SluiceError(
        'invalid-config',
        `node.id: ${file} holds ${q(machineId.slice(0, 60))}, which is not a valid node id; ${hint}`,
        file,
      );
    }
    id = machineId;
    origins.set('node.id', { label: `file ${file}`, where: file });
  }
  const hostname = m.node?.hostname ?? opts.hostname ?? osHostname();
  const tokenFile = m.node?.tokenFile ?? defaultTokenFile(opts.env ?? process.env);

  // etcd: the shared schema decides, with each field's origin in its messages.
  const { sessionTTL, holdTTL, ...etcdInput } = m.etcd ?? {};
  const where: Record<string, string> = {};
  for (const field of ETCD_FIELDS) {
    where[field] = `${origin(`etcd.${field}`).label}: etcd.${field}`;
  }
  if (!origins.has('etcd.cert') && origins.has('etcd.key')) where.cert = where.key!;
  let etcd: EtcdSettings;
  try {
    etcd = parseEtcdSettings(etcdInput, where);
  } catch (cause) {
    if (!isSluiceError(cause)) throw cause;
    const field = ETCD_FIELDS.find((f) => cause.message.startsWith(`${where[f]}:`)) ?? 'endpoints';
    const at = field === 'cert' && !origins.has('etcd.cert') ? 'etcd.key' : `etcd.${field}`;
    throw new SluiceError('invalid-config', cause.message, origin(at).where, { cause });
  }

  // strategy: locksmith's best-effort means the lock when etcd is configured.
  const chosen = m.strategy ?? 'etcd-lock';
  const strategy: Strategy =
    chosen === 'best-effort' ? (origins.has('etcd.endpoints') ? 'etcd-lock' : 'reboot') : chosen;

  // windows: all entries form one spec, in their zone unless an entry names its own.
  const entries = m.windows ?? [];
  const needLocal =
    m.windowZone === 'local' ||
    (m.windowZone === undefined && entries.some((e) => typeof e !== 'string'));
  const zones: WindowZones = needLocal
    ? await windowZones(m.windowZone, origin('windowZone').label, () =>
        localZone({
          env: opts.env ?? process.env,
          ...(opts.localtimeFile !== undefined ? { localtimeFile: opts.localtimeFile } : {}),
          ...(opts.zoneinfoDir !== undefined ? { zoneinfoDir: opts.zoneinfoDir } : {}),
        }).catch((error: unknown) => {
          if (isSluiceError(error)) throw configError(origin('windows'), 'windows', error.message);
          throw error;
        }),
      )
    : (() => {
        // No locksmith-syntax entry: the local zone is not needed (nor read).
        const zone =
          m.windowZone === undefined
            ? { zone: 'UTC', from: 'default' }
            : { zone: m.windowZone, from: origin('windowZone').label };
        return { sluice: zone, locksmith: zone };
      })();
  if (zones.warning) warnings.push(zones.warning);
  const resolved = resolveWindows(entries, zones, origin('windows'));
  const blackouts: Blackout[] = [];
  for (const text of m.blackouts ?? []) {
    const parsed = parseBlackouts(
      text,
      `${origin('blackouts').label}: blackouts`,
      zones.sluice.zone,
    );
    if (!parsed.ok) throw configError(origin('blackouts'), 'blackouts', parsed.error.message);
    blackouts.push(...parsed.value);
  }
  // The node's blackouts shut its own window spec (one that is always open when it has none).
  const windows =
    blackouts.length === 0
      ? resolved
      : [
          {
            ...(resolved[0] ?? { windows: [], source: `${origin('blackouts').label}: blackouts` }),
            blackouts,
          },
        ];

  // sources
  let command: AgentConfig['sources']['command'] = null;
  if (m.sources?.command) {
    const { run, interval } = m.sources.command;
    if (run === undefined) {
      throw configError(
        origin('sources.command.interval'),
        'sources.command.run',
        'is required (or set sources.command to null)',
      );
    }
    command = { run, intervalMs: interval ?? DEFAULTS.commandIntervalMs };
  }

  // metrics: loopback only unless allowed.
  const listen = m.metrics?.listen === undefined ? DEFAULTS.metricsListen : m.metrics.listen;
  const allowRemote = m.metrics?.allowRemote ?? false;
  if (listen !== null && !allowRemote) {
    const address = parseListenAddress(listen);
    if (address.ok && !isLoopback(address.value.host)) {
      throw fail(
        'metrics.listen',
        `${q(listen)} is not a loopback address; set metrics.allowRemote (SLUICE_METRICS_ALLOW_REMOTE, --metrics-allow-remote) to serve metrics to other hosts`,
      );
    }
  }

  const template = m.notify?.template ?? DEFAULT_NOTIFY.template;
  const templateProblem = template === null ? null : checkTemplate(template);
  if (templateProblem) throw fail('notify.template', templateProblem);

  return {
    node: { id, hostname, domain: m.node?.domain ?? null, tokenFile },
    clock: { maxSkewMs: m.clock?.maxSkew ?? DEFAULTS.maxClockSkewMs },
    etcd: {
      ...etcd,
      sessionTTL: sessionTTL ?? DEFAULTS.sessionTTL,
      holdTTL: holdTTL ?? DEFAULTS.holdTTL,
    },
    strategy,
    windows,
    blackouts,
    windowZones: zones,
    sources: {
      updateEngine: m.sources?.updateEngine ?? true,
      sentinel: m.sources?.sentinel === undefined ? DEFAULTS.sentinel : m.sources.sentinel,
      command,
      manual: m.sources?.manual ?? true,
      ...resolveOsSources(m.sources),
    },
    reboot: {
      method: m.reboot?.method ?? 'logind',
      command: m.reboot?.command ?? DEFAULTS.rebootCommand,
      softReboot: m.reboot?.softReboot ?? OS_DEFAULTS.softReboot,
      inhibitors: m.reboot?.inhibitors ?? OS_DEFAULTS.inhibitors,
      inhibitorWaitMs: m.reboot?.inhibitorWait ?? OS_DEFAULTS.inhibitorWaitMs,
      loopLimit: m.reboot?.loopLimit ?? OS_DEFAULTS.loopLimit,
      warnDelayMs: m.reboot?.warnDelay ?? 0,
      warnMessage: m.reboot?.warnMessage ?? DEFAULTS.warnMessage,
      expectedSlotMs:
        m.reboot?.expectedSlot === 'off'
          ? null
          : m.reboot?.expectedSlot === undefined || m.reboot.expectedSlot === 'auto'
            ? 'auto'
            : m.reboot.expectedSlot,
    },
    checks: {
      pre: m.checks?.pre ?? [],
      drain: m.checks?.drain ?? null,
      post: m.checks?.post ?? [],
      postDeadlineMs: m.checks?.postDeadline ?? DEFAULTS.postDeadlineMs,
      postIntervalMs: m.checks?.postInterval ?? DEFAULTS.postIntervalMs,
      releaseDelayMs: m.checks?.releaseDelay ?? 0,
    },
    dbus: { address: m.dbus?.address ?? 'system' },
    metrics: { listen, allowRemote },
    log: { level: m.log?.level ?? 'info' },
    notify: {
      webhooks: m.notify?.webhooks ?? DEFAULT_NOTIFY.webhooks,
      template,
      events: m.notify?.events ?? DEFAULT_NOTIFY.events,
      timeoutMs: m.notify?.timeout ?? DEFAULT_NOTIFY.timeoutMs,
      attempts: m.notify?.attempts ?? DEFAULT_NOTIFY.attempts,
    },
    origins: Object.fromEntries([...origins].map(([path, o]) => [path, o.label])),
    warnings,
  };
}

/** The OS sources as resolved: presets on (with their defaults) or off. */
export function resolveOsSources(sources: LayerValues['sources']): OsSources {
  const preset = <E extends object>(
    value:
      | boolean
      | null
      | ({ interval?: number; path?: string; timeout?: number } & E)
      | undefined,
  ): (PresetConfig & Omit<E, 'interval' | 'path' | 'timeout'>) | null => {
    if (value === undefined || value === null || value === false) return null;
    if (value === true) return { intervalMs: OS_DEFAULTS.presetIntervalMs } as PresetConfig & E;
    const { interval, path, timeout, ...rest } = value;
    return {
      ...rest,
      intervalMs: interval ?? OS_DEFAULTS.presetIntervalMs,
      ...(path !== undefined ? { path } : {}),
      ...(timeout !== undefined ? { timeoutMs: timeout } : {}),
    } as PresetConfig & E;
  };
  return {
    rpmOstree: sources?.rpmOstree ?? false,
    bootc: preset(sources?.bootc),
    sysupdate: preset(sources?.sysupdate),
    needrestart: preset(sources?.needrestart),
    dnf: preset(sources?.dnf),
  };
}

type WindowEntry = string | { start: string; length: string };

/**
 * The zones window entries that name none are read in: `windowZone` when it is set (`local`
 * meaning the node's zone), else UTC for sluice's syntax and the node's local zone for
 * locksmith's (`{ start, length }`, update.conf, `LOCKSMITHD_REBOOT_WINDOW_*`), as locksmithd
 * read its window in `time.Local`.
 */
export interface WindowZones {
  /** The zone of sluice-syntax entries, and where that was decided. */
  sluice: { zone: string; from: string };
  /** The zone of locksmith-syntax entries, and where that was decided. */
  locksmith: { zone: string; from: string };
  /** Set when the local zone fell back to UTC by Go's rules (an unknown TZ, say). */
  warning?: string;
}

/** The zone of each window syntax (sluice's and locksmith's), and where it came from. */
export async function windowZones(
  windowZone: string | undefined,
  windowZoneFrom: string,
  local: () => Promise<LocalZone>,
): Promise<WindowZones> {
  if (windowZone !== undefined && windowZone !== 'local') {
    const set = { zone: windowZone, from: windowZoneFrom };
    return { sluice: set, locksmith: set };
  }
  const found = await local();
  const node = { zone: found.zone, from: `local zone: ${found.from}` };
  const warning = found.warning === undefined ? {} : { warning: found.warning };
  if (windowZone === 'local') {
    const set = { zone: found.zone, from: `${windowZoneFrom} (local zone: ${found.from})` };
    return { sluice: set, locksmith: set, ...warning };
  }
  return { sluice: { zone: 'UTC', from: 'default' }, locksmith: node, ...warning };
}

function resolveWindows(
  entries: readonly WindowEntry[],
  zones: WindowZones,
  origin: Origin,
): WindowSpec[] {
  const source = `${origin.label}: windows`;
  const texts = entries.filter((e): e is string => typeof e === 'string');
  if (entries.length > 1 && texts.some((t) => t.trim().toLowerCase() === 'always')) {
    throw configError(origin, 'windows', '"always" cannot be combined with other windows');
  }
  const rethrow = (error: SluiceError) => {
    const prefix = `invalid reboot window in ${source}: `;
    const why = error.message.startsWith(prefix)
      ? error.message.slice(prefix.length)
      : error.message;
    return configError(origin, 'windows', `invalid reboot window: ${why}`, error);
  };
  const all: WeeklyWindow[] = [];
  for (const text of texts) {
    // Each entry on its own, so a blank one is refused rather than skipped as a blank line.
    const spec = parseWindowSpec(text, source, zones.sluice.zone);
    if (!spec.ok) throw rethrow(spec.error);
    all.push(...spec.value.windows);
  }
  if (all.length > MAX_WINDOW_ENTRIES) {
    throw configError(origin, 'windows', `at most ${MAX_WINDOW_ENTRIES} window entries in all`);
  }
  for (const entry of entries) {
    if (typeof entry === 'string') continue;
    const window = parseLocksmithWindow(entry.start, entry.length, source, zones.locksmith.zone);
    if (!window.ok) throw rethrow(window.error);
    all.push(...window.value.windows);
  }
  return all.length === 0 ? [] : [{ windows: all, source }];
}
