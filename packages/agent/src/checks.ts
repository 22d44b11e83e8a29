/**
 * Pre- and post-reboot checks: shell commands, HTTP probes and Prometheus queries. They fail
 * closed and never throw: a check that cannot run, times out, is cancelled or gets an answer it
 * does not understand has failed, and its `detail` says why. This is the one place that turns
 * errors into "do not reboot".
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { formatDuration } from '@sluice/core';
import { duration, httpUrl, section, shorten, text, withoutCredentials } from './config/fields.js';
import type {
  CheckSpec,
  CheckSpecCommand,
  CheckSpecHttp,
  CheckSpecPrometheus,
} from './config/index.js';
import { DEFAULTS } from './config/types.js';

/** The outcome of one check. */
export interface CheckResult {
  /** The check's name from its spec. */
  name: string;
  /** True only when the check positively passed. */
  ok: boolean;
  /** What happened, for logs and status: exit code and output tail, HTTP status, query value. */
  detail: string;
  /** How long the check took, in whole milliseconds. */
  durationMs: number;
}

/** How much of a command's output, or an HTTP body, goes into a detail. */
const TAIL_CHARS = 500;

/** How long a timed-out command's process group gets between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 2_000;

/** How long to wait for output after the shell exits, if a background process keeps it open. */
const DRAIN_MS = 500;

/** Largest HTTP body read, in bytes; the rest is ignored. */
const MAX_BODY_BYTES = 1 << 20;

/** What became of a shell command run by `runShellCommand`. */
export interface ShellOutcome {
  /** The exit code, or null when the shell was killed by a signal or never started. */
  code: number | null;
  /** The signal that ended the shell, if any. */
  signal: NodeJS.Signals | null;
  /** Why sluice stopped the command early, if it did. */
  stopped: 'timeout' | 'aborted' | null;
  /** Set when the shell could not be started. */
  spawnError?: string;
  /** The last few hundred characters of stdout and stderr, interleaved, trimmed. */
  tail: string;
  /** The first line of stdout. */
  firstLine: string;
}

/**
 * Runs `command` with `/bin/sh -c` in its own process group, collecting the tail of its output.
 * On timeout or abort the whole group gets SIGTERM, then SIGKILL after `KILL_GRACE_MS`. Never
 * rejects. Resolves once the shell has exited and its output is read (or `DRAIN_MS` after the
 * exit, if a background process keeps the output open).
 */
export function runShellCommand(
  command: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<ShellOutcome> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve({ code: null, signal: null, stopped: 'aborted', tail: '', firstLine: '' });
      return;
    }
    let output = '';
    let stdout = '';
    let stopped: ShellOutcome['stopped'] = null;
    let exited = false;
    let done = false;
    const timers: NodeJS.Timeout[] = [];

    const child = spawn('/bin/sh', ['-c', command], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const killGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // The group is already gone.
      }
    };
    const stop = (why: 'timeout' | 'aborted') => {
      if (exited || stopped !== null) return;
      stopped = why;
      killGroup('SIGTERM');
      // Not cleared when the shell exits: stragglers in the group that ignore SIGTERM die too.
      setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS).unref();
    };
    const onAbort = () => stop('aborted');
    const finish = (outcome: Omit<ShellOutcome, 'stopped' | 'tail' | 'firstLine'>) => {
      if (done) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      signal?.removeEventListener('abort', onAbort);
      child.stdout?.destroy();
      child.stderr?.destroy();
      const firstLine = stdout.split('\n', 1)[0]!.trim();
      resolve({ ...outcome, stopped, tail: output.slice(-TAIL_CHARS).trim(), firstLine });
    };

    const append = (stream: 'out' | 'err') => (chunk: Buffer) => {
      const piece = chunk.toString('utf8');
      output = (output + piece).slice(-4 * TAIL_CHARS);
      if (stream === 'out' && stdout.length < 4096) stdout += piece;
    };
    child.stdout.on('data', append('out'));
    child.stderr.on('data', append('err'));
    child.on('error', (error) => {
      exited = true;
      finish({ code: null, signal: null, spawnError: error.message });
    });
    child.on('exit', (code, sig) => {
      exited = true;
      // Normally 'close' follows at once; a background process holding the output open must
      // not hold up the result.
      timers.push(setTimeout(() => finish({ code, signal: sig }), DRAIN_MS));
    });
    child.on('close', (code, sig) => finish({ code, signal: sig }));
    timers.push(setTimeout(() => stop('timeout'), timeoutMs));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const withTail = (text: string, tail: string): string => (tail === '' ? text : `${text}: ${tail}`);

async function commandCheck(spec: CheckSpecCommand, signal?: AbortSignal): Promise<Verdict> {
  const run = await runShellCommand(spec.command, spec.timeoutMs, signal);
  if (run.spawnError !== undefined) return fail(`cannot run /bin/sh: ${run.spawnError}`);
  if (run.stopped === 'timeout') {
    return fail(withTail(`timed out after ${formatDuration(spec.timeoutMs)} (killed)`, run.tail));
  }
  if (run.stopped === 'aborted') return fail('cancelled');
  if (run.code === null) return fail(withTail(`killed by ${run.signal ?? 'a signal'}`, run.tail));
  return { ok: run.code === 0, detail: withTail(`exit code ${run.code}`, run.tail) };
}

interface Verdict {
  ok: boolean;
  detail: string;
}

const fail = (detail: string): Verdict => ({ ok: false, detail });

/** Explains a failed fetch: timeout, cancellation, or the network error code. */
function fetchFailure(error: unknown, timeoutMs: number, signal?: AbortSignal): Verdict {
  if (signal?.aborted) return fail('cancelled');
  const name = (error as Error | undefined)?.name;
  if (name === 'TimeoutError') return fail(`timed out after ${formatDuration(timeoutMs)}`);
  const cause = (error as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  const why =
    cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
  return fail(`request failed: ${why}`);
}

/** GETs a URL under the check's timeout and the caller's signal, reading at most 1 MiB. */
async function get(
  url: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ status: number; statusText: string; body: string }> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const response = await fetch(url, { signal: combined, redirect: 'follow' });
  let body = '';
  if (response.body) {
    const decoder = new TextDecoder();
    let bytes = 0;
    for await (const chunk of response.body) {
      bytes += chunk.byteLength;
      body += decoder.decode(chunk, { stream: true });
      if (bytes >= MAX_BODY_BYTES) break;
    }
  }
  return { status: response.status, statusText: response.statusText, body };
}

const snippet = (body: string): string => {
  const flat = body.replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}...` : flat;
};

async function httpCheck(spec: CheckSpecHttp, signal?: AbortSignal): Promise<Verdict> {
  try {
    const { status, statusText, body } = await get(spec.url, spec.timeoutMs, signal);
    const line = `HTTP ${status}${statusText ? ` ${statusText}` : ''}`;
    if (status >= 200 && status < 300) return { ok: true, detail: line };
    return fail(withTail(line, snippet(body)));
  } catch (error) {
    return fetchFailure(error, spec.timeoutMs, signal);
  }
}

/** A sample's labels as PromQL writes them: `{job="api",instance="a"}`. */
function labels(metric: unknown): string {
  if (typeof metric !== 'object' || metric === null) return '{}';
  const pairs = Object.entries(metric).map(([k, v]) => `${k}=${JSON.stringify(String(v))}`);
  return `{${pairs.join(',')}}`;
}

/** A `[timestamp, "value"]` pair's value, or undefined if it is not one. */
function sampleValue(pair: unknown): string | undefined {
  return Array.isArray(pair) && typeof pair[1] === 'string' ? pair[1] : undefined;
}

/**
 * Judges an instant query's answer: passes when it succeeded and every sample is 0 (or there are
 * none). `NaN`, `+Inf` and anything that is not a number fail.
 */
export function judgePrometheus(body: unknown): Verdict {
  if (typeof body !== 'object' || body === null) return fail('answer is not a JSON object');
  const answer = body as { status?: unknown; errorType?: unknown; error?: unknown; data?: unknown };
  if (answer.status !== 'success') {
    const kind = typeof answer.errorType === 'string' ? `${answer.errorType}: ` : '';
    const why = typeof answer.error === 'string' ? answer.error : 'no error given';
    return fail(`query failed (status ${JSON.stringify(answer.status)}): ${kind}${why}`);
  }
  const data = answer.data as { resultType?: unknown; result?: unknown } | undefined;
  const samples: { labels: string; value: string | undefined }[] = [];
  switch (data?.resultType) {
    case 'scalar':
      samples.push({ labels: 'scalar', value: sampleValue(data.result) });
      break;
    case 'vector':
      if (!Array.isArray(data.result)) return fail('vector result is not a list');
      for (const s of data.result as { metric?: unknown; value?: unknown }[]) {
        samples.push({ labels: labels(s?.metric), value: sampleValue(s?.value) });
      }
      break;
    case 'matrix':
      if (!Array.isArray(data.result)) return fail('matrix result is not a list');
      for (const s of data.result as { metric?: unknown; values?: unknown }[]) {
        const values = Array.isArray(s?.values) ? s.values : [undefined];
        for (const v of values) samples.push({ labels: labels(s?.metric), value: sampleValue(v) });
      }
      break;
    default:
      return fail(`unexpected result type ${JSON.stringify(data?.resultType)}`);
  }
  if (samples.length === 0) return { ok: true, detail: 'no samples' };
  const bad = samples.filter((s) => s.value === undefined || Number(s.value) !== 0);
  if (bad.length === 0) {
    return {
      ok: true,
      detail: `${samples.length} sample${samples.length === 1 ? '' : 's'}, all 0`,
    };
  }
  const shown = bad
    .slice(0, 3)
    .map((s) => `${s.labels} = ${s.value ?? 'malformed sample'}`)
    .join(', ');
  const more = bad.length > 3 ? ` and ${bad.length - 3} more` : '';
  return fail(`non-zero value: ${shown}${more}`);
}

async function prometheusCheck(spec: CheckSpecPrometheus, signal?: AbortSignal): Promise<Verdict> {
  const base = spec.url.replace(/\/+$/, '');
  const url = `${base}/api/v1/query?query=${encodeURIComponent(spec.query)}`;
  let answer: Awaited<ReturnType<typeof get>>;
  try {
    answer = await get(url, spec.timeoutMs, signal);
  } catch (error) {
    return fetchFailure(error, spec.timeoutMs, signal);
  }
  let body: unknown;
  try {
    body = JSON.parse(answer.body);
  } catch {
    return fail(withTail(`HTTP ${answer.status}: answer is not JSON`, snippet(answer.body)));
  }
  const verdict = judgePrometheus(body);
  // Prometheus answers errors with 400/422/503 and a JSON body; a 2xx is needed to pass anyway.
  if (verdict.ok && (answer.status < 200 || answer.status >= 300)) {
    return fail(`HTTP ${answer.status}: ${verdict.detail}`);
  }
  return verdict;
}

/**
 * Runs one check and says whether it passed. Never throws: errors, timeouts and cancellation
 * (through `signal`) are failures with a detail. A command passes on exit 0 (a timeout kills its
 * process group); an HTTP check on a 2xx answer; a Prometheus check when the instant query
 * succeeds and returns no samples or only zeros.
 */
export async function runCheck(spec: CheckSpec, signal?: AbortSignal): Promise<CheckResult> {
  const started = performance.now();
  let verdict: Verdict;
  try {
    if (signal?.aborted) verdict = fail('cancelled');
    else if (spec.type === 'command') verdict = await commandCheck(spec, signal);
    else if (spec.type === 'http') verdict = await httpCheck(spec, signal);
    else if (spec.type === 'prometheus') verdict = await prometheusCheck(spec, signal);
    else verdict = fail(`unknown check type ${JSON.stringify((spec as { type: unknown }).type)}`);
  } catch (error) {
    verdict = fail(
      `check failed unexpectedly: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  return {
    name: spec.name,
    ok: verdict.ok,
    detail: verdict.detail,
    durationMs: Math.round(performance.now() - started),
  };
}

/**
 * Runs checks one after another and stops at the first failure, so a failing pre-check keeps a
 * drain or a later probe from running. `ok` is true only if every check passed (and for an empty
 * list). `results` holds the checks that ran, the failed one last.
 */
export async function runChecks(
  specs: readonly CheckSpec[],
  signal?: AbortSignal,
): Promise<{ ok: boolean; results: CheckResult[] }> {
  const results: CheckResult[] = [];
  for (const spec of specs) {
    const result = await runCheck(spec, signal);
    results.push(result);
    if (!result.ok) return { ok: false, results };
  }
  return { ok: true, results };
}

/**
 * One check as the configuration file writes it (`checks.pre[]`, `checks.post[]`,
 * `checks.drain`): `{ command }`, `{ http }` or `{ prometheus, query }`, with an optional name and
 * timeout, resolved into a CheckSpec.
 */
export const CheckEntrySchema = section({
  name: text.optional(),
  command: text.optional(),
  http: httpUrl.optional(),
  prometheus: httpUrl.optional(),
  query: text.optional(),
  timeout: duration({ positive: true }).optional(),
})
  .superRefine((c, ctx) => {
    const kinds = (['command', 'http', 'prometheus'] as const).filter((k) => c[k] !== undefined);
    if (kinds.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'needs one of command, http or prometheus' });
    } else if (kinds.length > 1) {
      ctx.addIssue({ code: 'custom', message: `has both ${kinds.join(' and ')}; one per check` });
    }
    if (c.prometheus !== undefined && c.query === undefined) {
      ctx.addIssue({ code: 'custom', message: 'is required with prometheus', path: ['query'] });
    }
    if (c.prometheus === undefined && c.query !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'only goes with prometheus', path: ['query'] });
    }
  })
  .transform((c): CheckSpec => {
    const timeoutMs = c.timeout ?? DEFAULTS.checkTimeoutMs;
    if (c.command !== undefined) {
      const name = c.name ?? `command ${shorten(c.command)}`;
      return { type: 'command', name, command: c.command, timeoutMs };
    }
    if (c.http !== undefined) {
      const name = c.name ?? `http ${shorten(withoutCredentials(c.http))}`;
      return { type: 'http', name, url: c.http, timeoutMs };
    }
    const url = c.prometheus!.replace(/\/+$/, '');
    const query = c.query!;
    return {
      type: 'prometheus',
      name: c.name ?? `prometheus ${shorten(query)}`,
      url,
      query,
      timeoutMs,
    };
  });
