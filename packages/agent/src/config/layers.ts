/**
 * Reading the layers (update.conf, the YAML file, the environment, flags), each validated on its
 * own, and merging them with the origin of every value.
 */
/**
 * Reading the layers (update.conf, the YAML file, the environment, flags), each validated on its own, and merging them with the origin of every value.
 */
import { open } from 'node:fs/promises';
import { isSluiceError, SluiceError } from '@sluice/core';
import { type EtcdSettings, etcdSettingsFromEnv, splitEndpoints } from '@sluice/etcd/settings';
import { type Document, Lexer, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { parseUpdateConfs } from '../locksmith.js';
import { MAX_CONFIG_DEPTH, MAX_CONFIG_FILE_BYTES, PLAIN_KEY, typeOf } from './fields.js';
import { type AgentFlags, type Kind, SETTINGS } from './flags.js';
import { addSecrets } from './load.js';
import { AgentConfigFileSchema, ETCD_FIELDS, type LayerValues } from './schema.js';

/** Where to read the configuration from. Every field has a default for production use. */
export interface LoadOptions {
  /**
   * The YAML file. Default: `flags.config`, else `SLUICE_CONFIG`, else
   * `/etc/sluice/sluiced.yaml`. A missing default file is fine; a missing named file is an error.
   */
  configFile?: string;
  /** Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Parsed command-line flags. */
  flags?: AgentFlags;
  /** locksmith's update.conf files; a later file wins. Missing files are skipped. */
  updateConfFiles?: readonly string[];
  /** Default `/etc/machine-id`. */
  machineIdFile?: string;
  /** The default host name, instead of `os.hostname()`. */
  hostname?: string;
  /** Where the local zone is read when `TZ` is unset. Default `/etc/localtime`. */
  localtimeFile?: string;
  /** The tz database directory, for naming a copied localtime file. Default `/usr/share/zoneinfo`. */
  zoneinfoDir?: string;
}

/** Where one setting came from: a label for messages and the file, variable or flag at fault. */
export interface Origin {
  label: string;
  where: string;
}

/** One layer of input, in the YAML file's shape, with the origin of each setting it holds. */
export interface RawLayer {
  raw: unknown;
  origins: Map<string, Origin>;
  /** The origin of anything `origins` does not list (the whole file). */
  fallback?: Origin;
  /** For the YAML file: the line a setting (or the nearest key above it) is written on. */
  lineOf?: (path: readonly PropertyKey[]) => number | undefined;
}

/** Paths whose values replace rather than merge with lower layers, and are one origin. */
const UNITS = new Set(['windows', 'etcd.endpoints', 'checks.pre', 'checks.post', 'checks.drain']);

/** True for a plain object (a YAML mapping), not an array or null. */
export const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (isPlainObject(next)) {
      node = next;
    } else {
      const created: Record<string, unknown> = {};
      node[part] = created;
      node = created;
    }
  }
  node[parts[parts.length - 1]!] = value;
}

/** Lists the settings in a parsed YAML document, down to the units, for origin tracking. */
function leafPaths(value: unknown, prefix = ''): string[] {
  if (!isPlainObject(value) || UNITS.has(prefix)) return prefix === '' ? [] : [prefix];
  return Object.entries(value).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
}

/** An `invalid-config` error naming the layer and the key at fault. */
export function configError(
  origin: Origin,
  path: string,
  message: string,
  cause?: unknown,
): SluiceError {
  const at = path === '' ? '' : `${path}: `;
  return new SluiceError('invalid-config', `${origin.label}: ${at}${message}`, origin.where, {
    cause,
  });
}

/** `['checks', 'pre', 0, 'timeout']` → `checks.pre[0].timeout`. */
function displayPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else {
      const key = PLAIN_KEY.test(String(part)) ? String(part) : '(key not shown)';
      out += out === '' ? key : `.${key}`;
    }
  }
  return out;
}

function originOf(layer: RawLayer, path: readonly PropertyKey[]): Origin {
  const parts = path.map(String);
  for (let n = parts.length; n > 0; n--) {
    const found = layer.origins.get(parts.slice(0, n).join('.'));
    if (found) return found;
  }
  return layer.fallback ?? { label: 'configuration', where: 'configuration' };
}

/** Picks the most telling issue: inside a union, the branch that got past the type check. */
function explain(
  issue: z.core.$ZodIssue,
  base: readonly PropertyKey[] = [],
): { path: PropertyKey[]; message: string } {
  const path = [...base, ...issue.path];
  if (issue.code === 'invalid_union') {
    for (const branch of issue.errors) {
      if (
        branch.length > 0 &&
        !branch.some((i) => i.path.length === 0 && i.code === 'invalid_type')
      ) {
        return explain(pickIssue(branch), path);
      }
    }
  }
  if (issue.code === 'unrecognized_keys' && issue.keys.length === 1) {
    return { path: [...path, issue.keys[0]!], message: issue.message };
  }
  return { path, message: issue.message };
}

/** An unknown key first: it is usually a typo that also explains a "missing" key beside it. */
function pickIssue(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue {
  return issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
}

/** Validates one layer against the file schema, naming the key and where it came from. */
export function parseLayer(layer: RawLayer): LayerValues {
  const parsed = AgentConfigFileSchema.safeParse(layer.raw);
  if (!parsed.success) {
    const { path, message } = explain(pickIssue(parsed.error.issues));
    const line = layer.lineOf?.(path);
    const where = originOf(layer, path);
    const at = line === undefined ? where : { ...where, label: `${where.label}, line ${line}` };
    throw configError(at, displayPath(path), message);
  }
  const values = parsed.data;
  // The etcd fields come from the shared schema, whose defaults would fill in keys this layer
  // does not set: keep only the keys that were given.
  const rawEtcd = isPlainObject(layer.raw) ? layer.raw.etcd : undefined;
  if (values.etcd && isPlainObject(rawEtcd)) {
    const etcd = values.etcd as Record<string, unknown>;
    for (const key of Object.keys(etcd)) if (!(key in rawEtcd)) delete etcd[key];
  }
  return values;
}

/** Merges a higher layer over a lower one; lists and windows replace, mappings merge. */
export function mergeValues(
  target: Record<string, unknown>,
  source: Record<string, unknown>,
  prefix = '',
): Record<string, unknown> {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    const current = target[key];
    if (isPlainObject(value) && !UNITS.has(path)) {
      target[key] = mergeValues(isPlainObject(current) ? current : {}, value, path);
    } else {
      target[key] = value;
    }
  }
  return target;
}

/** Records where each leaf of a layer came from, over the lower layers' origins. */
export function mergeOrigins(target: Map<string, Origin>, layer: RawLayer): void {
  const paths = layer.origins.size > 0 ? [...layer.origins.keys()] : leafPaths(layer.raw);
  for (const path of paths) {
    for (const existing of [...target.keys()]) {
      if (existing.startsWith(`${path}.`)) target.delete(existing);
    }
    const origin = originOf(layer, path.split('.'));
    const line = layer.lineOf?.(path.split('.'));
    target.set(path, line === undefined ? origin : { ...origin, label: `${origin.label}:${line}` });
  }
}

const parseBool = (value: string): boolean | string => {
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return value;
};

/** The layer of environment variables (`SLUICE_*`, locksmith's names for etcd and windows). */
export function envLayer(env: NodeJS.ProcessEnv): RawLayer {
  const raw: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  const etcd = etcdSettingsFromEnv(env);
  for (const [field, value] of Object.entries(etcd.values)) {
    const name = etcd.sources[field as keyof EtcdSettings]!;
    setPath(raw, `etcd.${field}`, value);
    origins.set(`etcd.${field}`, { label: `environment ${name}`, where: name });
  }
  for (const setting of SETTINGS) {
    // SLUICE_CONFIG names the file; the etcd connection variables were read above.
    if (setting.path === '' || ETCD_FIELDS.some((f) => setting.path === `etcd.${f}`)) continue;
    const name = setting.env.find((n) => env[n] !== undefined && env[n] !== '');
    if (name === undefined) continue;
    const value = env[name]!;
    setPath(raw, setting.path, convert(setting.kind, value));
    origins.set(setting.path, { label: `environment ${name}`, where: name });
  }
  // locksmithd's own window variables, read as locksmithd read them: the LOCKSMITHD_ name when
  // set and not empty, else the old one; start and length together.
  const pick = (names: string[]) => names.find((n) => env[n] !== undefined && env[n] !== '');
  const start = pick(['LOCKSMITHD_REBOOT_WINDOW_START', 'REBOOT_WINDOW_START']);
  const length = pick(['LOCKSMITHD_REBOOT_WINDOW_LENGTH', 'REBOOT_WINDOW_LENGTH']);
  if (start !== undefined || length !== undefined) {
    const name = (start ?? length)!;
    const origin = { label: `environment ${name}`, where: name };
    if (start === undefined || length === undefined) {
      throw configError(
        origin,
        'windows',
        `${name} is set without ${start === undefined ? 'LOCKSMITHD_REBOOT_WINDOW_START' : 'LOCKSMITHD_REBOOT_WINDOW_LENGTH'}; set both or neither, as locksmithd required`,
      );
    }
    if (raw.windows !== undefined) {
      throw configError(
        origin,
        'windows',
        `both ${origins.get('windows')?.where} and ${name} are set; keep one of them`,
      );
    }
    raw.windows = [{ start: env[start]!, length: env[length]! }];
    origins.set('windows', origin);
  }
  return { raw, origins };
}

function convert(kind: Kind, value: unknown): unknown {
  switch (kind) {
    case 'bool':
      return typeof value === 'string' ? parseBool(value) : value;
    case 'window':
      return Array.isArray(value) ? value : [value];
    case 'endpoints':
      return (Array.isArray(value) ? value : [value]).flatMap((v) =>
        typeof v === 'string' ? splitEndpoints(v) : [v],
      );
    case 'text':
      return value;
  }
}

/** The layer of command-line flags. */
export function flagLayer(flags: AgentFlags): RawLayer {
  const raw: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  for (const setting of SETTINGS) {
    if (setting.path === '') continue;
    const value = flags[setting.name];
    if (value === undefined || (Array.isArray(value) && value.length === 0)) continue;
    const flag = setting.flag.split(' ')[0]!;
    setPath(raw, setting.path, convert(setting.kind, value));
    origins.set(setting.path, { label: `flag ${flag}`, where: flag });
  }
  return { raw, origins };
}

/**
 * Reads a configuration file of at most MAX_CONFIG_FILE_BYTES; never reads more than that, so a
 * huge file (or a device) costs nothing. Throws a SluiceError naming the file when it is larger.
 */
export async function readCapped(path: string, label: string): Promise<string> {
  return (await readCappedBytes(path, label)).toString('utf8');
}

async function readCappedBytes(path: string, label: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(MAX_CONFIG_FILE_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_CONFIG_FILE_BYTES) {
      throw new SluiceError(
        'invalid-config',
        `${label}: the file is larger than ${MAX_CONFIG_FILE_BYTES / 1024} KiB; a configuration file is a few KiB`,
        path,
      );
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** A file's text, or undefined when it does not exist. */
export async function readOptional(path: string): Promise<string | undefined> {
  return (await readOptionalBytes(path))?.toString('utf8');
}

/** Reads a file of at most MAX_CONFIG_FILE_BYTES; undefined when it does not exist. */
async function readOptionalBytes(path: string): Promise<Buffer | undefined> {
  try {
    return await readCappedBytes(path, path);
  } catch (cause) {
    if (isSluiceError(cause)) throw cause;
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new SluiceError('invalid-config', `cannot read ${path} (${code ?? cause})`, path, {
      cause,
    });
  }
}

/**
 * Reads locksmith's update.conf files as one layer, in order (a later file wins), as systemd
 * reads them for locksmithd.service. Missing files are skipped.
 */
export async function updateConfLayer(
  paths: readonly string[],
  secrets: Set<string>,
): Promise<{ layer: RawLayer; warnings: string[] } | undefined> {
  const files: { path: string; content: Buffer }[] = [];
  for (const path of paths) {
    const content = await readOptionalBytes(path);
    if (content !== undefined) files.push({ path, content });
  }
  if (files.length === 0) return undefined;
  const parsed = parseUpdateConfs(files);
  if (!parsed.ok) throw parsed.error;
  const { settings, origins: lines, warnings } = parsed.value;
  addSecrets(settings.password, true, secrets);
  for (const endpoint of settings.endpoints ?? []) addSecrets(endpoint, false, secrets);
  const raw: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  const note = (yamlPath: string, field: keyof typeof lines) => {
    const at = lines[field]!;
    origins.set(yamlPath, { label: `${at.path}:${at.line} (${at.key})`, where: at.path });
  };
  if (settings.strategy !== undefined) {
    raw.strategy = settings.strategy;
    note('strategy', 'strategy');
  }
  if (settings.windowStart !== undefined && settings.windowLength !== undefined) {
    raw.windows = [{ start: settings.windowStart, length: settings.windowLength }];
    note('windows', 'windowStart');
  }
  for (const field of [
    'endpoints',
    'cacert',
    'cert',
    'key',
    'username',
    'password',
    'group',
  ] as const) {
    if (settings[field] === undefined) continue;
    setPath(raw, `etcd.${field}`, settings[field]);
    note(`etcd.${field}`, field);
  }
  return { layer: { raw, origins }, warnings };
}

/** The layer of the YAML file, with the line of each key for error messages. */
export async function fileLayer(
  path: string,
  explicit: Origin | undefined,
): Promise<RawLayer | undefined> {
  const origin: Origin = { label: `config file ${path}`, where: path };
  let content: string;
  try {
    content = await readCapped(path, origin.label);
  } catch (cause) {
    if (isSluiceError(cause)) throw cause;
    const code = (cause as NodeJS.ErrnoException).code ?? String(cause);
    if (explicit === undefined && code === 'ENOENT') return undefined;
    const named = explicit ? ` (named by ${explicit.label})` : '';
    throw configError(origin, '', `cannot read it${named}: ${code}`, cause);
  }
  // Composing a document recurses once per level: refuse deep nesting before that happens.
  if (nestingBound(content) > NESTING_SCAN_LIMIT) {
    throw configError(origin, '', `the YAML is nested more than ${MAX_CONFIG_DEPTH} levels`);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(content, { uniqueKeys: true, lineCounter });
  const problem = doc.errors[0];
  if (problem) {
    // The first line only: the rest quotes the file, which may hold the password.
    const first = problem.message.split('\n')[0]!.replace(/:$/, '');
    throw configError(origin, '', `invalid YAML: ${first}`);
  }
  let raw: unknown;
  try {
    raw = doc.toJS() ?? {};
  } catch (cause) {
    throw configError(origin, '', 'invalid YAML (too many aliases?)', cause);
  }
  if (!isPlainObject(raw)) {
    throw configError(origin, '', `expected a mapping of settings, got ${typeOf(raw)}`);
  }
  if (depthOf(raw) > MAX_CONFIG_DEPTH) {
    throw configError(origin, '', `the YAML is nested more than ${MAX_CONFIG_DEPTH} levels`);
  }
  const lineOf = (path: readonly PropertyKey[]) => {
    const offset = offsetOf(doc, path);
    return offset === undefined ? undefined : lineCounter.linePos(offset).line;
  };
  return { raw, origins: new Map(), fallback: origin, lineOf };
}

/** The lexical nesting above which a file is refused unread (see `nestingBound`). */
export const NESTING_SCAN_LIMIT = 256;

/**
 * An upper bound on how deeply a YAML text nests, from its tokens alone (no recursion): flow
 * brackets open, plus, per line, twice its indentation and block indicators (`-`, `?`, `:`). A
 * block collection nests deeper only by indenting or by an indicator on its line, and at most two
 * levels share a column (a list as a mapping's value). Stops counting once past the scan limit.
 */
export function nestingBound(text: string): number {
  let flow = 0;
  let indent = 0;
  let indicators = 0;
  let lineStart = true;
  let bound = 0;
  for (const token of new Lexer().lex(text)) {
    if (token === '[' || token === '{') flow++;
    else if (token === ']' || token === '}') flow = Math.max(0, flow - 1);
    else if (token === '\n' || token === '\r\n') {
      lineStart = true;
      indent = 0;
      indicators = 0;
      continue;
    } else if (token === '-' || token === '?' || token === ':') indicators++;
    else if (lineStart && /^ +$/.test(token)) indent = token.length;
    lineStart = false;
    bound = Math.max(bound, flow + 2 * (indent + indicators));
    if (bound > NESTING_SCAN_LIMIT) return bound;
  }
  return bound;
}

/** How deeply a parsed value nests mappings and lists (a scalar is 0). Iterative. */
function depthOf(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== 'object' || node === null || seen.has(node)) continue;
    seen.add(node);
    max = Math.max(max, depth + 1);
    if (max > MAX_CONFIG_DEPTH) return max;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return max;
}

/** Where a setting's key (or the nearest one above it) starts in the file, as an offset. */
function offsetOf(doc: Document, path: readonly PropertyKey[]): number | undefined {
  let node: unknown = doc.contents;
  let offset: number | undefined;
  for (const part of path) {
    const items = (node as { items?: unknown[] } | null)?.items;
    if (!Array.isArray(items)) break;
    if (typeof part === 'number') {
      node = items[part];
      const range = (node as { range?: number[] } | undefined)?.range;
      if (range) offset = range[0];
      continue;
    }
    const pair = items.find(
      (p) => String((p as { key?: { value?: unknown } }).key?.value) === String(part),
    ) as { key?: { range?: number[] }; value?: unknown } | undefined;
    if (!pair) break;
    if (pair.key?.range) offset = pair.key.range[0];
    node = pair.value;
  }
  return offset;
}
