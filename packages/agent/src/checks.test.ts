import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { judgePrometheus, runCheck, runChecks } from './checks.js';
import type { CheckSpec } from './config/index.js';

const command = (cmd: string, timeoutMs = 5000): CheckSpec => ({
  type: 'command',
  name: 'cmd',
  command: cmd,
  timeoutMs,
});

/** True while a process with this pid runs; a zombie (dead, not yet reaped) does not count. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('command checks', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-checks-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('passes on exit 0 and shows the output', async () => {
    const result = await runCheck(command('echo all good'));
    expect(result).toMatchObject({ name: 'cmd', ok: true, detail: 'exit code 0: all good' });
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('fails on a non-zero exit with the exit code and the tail of stderr', async () => {
    const long = 'x'.repeat(2000);
    const result = await runCheck(command(`echo ${long} >&2; echo "disk full" >&2; exit 3`));
    expect(result.ok).toBe(false);
    expect(result.detail).toMatch(/^exit code 3: x+\ndisk full$/);
    expect(result.detail.length).toBeLessThan(600);
  });

  it('kills a sleep 30 on timeout, fast', async () => {
    const pidFile = join(dir, 'sleep');
    const started = Date.now();
    const result = await runCheck(command(`echo $$ > ${pidFile}; exec sleep 30`, 300));
    expect(Date.now() - started).toBeLessThan(1500);
    expect(result).toMatchObject({ ok: false, detail: 'timed out after 300ms (killed)' });
    expect(alive(Number(await readFile(pidFile, 'utf8')))).toBe(false);
  });

  it('kills the whole process group on timeout, fast', async () => {
    const pidFile = join(dir, 'pid');
    const started = Date.now();
    const result = await runCheck(command(`sleep 30 & echo $! > ${pidFile}; wait`, 300));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(result.ok).toBe(false);
    expect(result.detail).toMatch(/^timed out after 300ms \(killed\)/);
    const pid = Number(await readFile(pidFile, 'utf8'));
    await expect.poll(() => alive(pid), { timeout: 1000 }).toBe(false);
  });

  it('escalates to SIGKILL when the command ignores SIGTERM', async () => {
    const pidFile = join(dir, 'stubborn');
    const result = await runCheck(
      command(`trap '' TERM; echo $$ > ${pidFile}; while :; do sleep 0.1; done`, 200),
    );
    expect(result.ok).toBe(false);
    expect(result.detail).toMatch(/^timed out/);
    const pid = Number(await readFile(pidFile, 'utf8'));
    await expect.poll(() => alive(pid), { timeout: 4000, interval: 100 }).toBe(false);
  });

  it('fails when cancelled, and does not start when already cancelled', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const result = await runCheck(command('sleep 30'), controller.signal);
    expect(result).toMatchObject({ ok: false, detail: 'cancelled' });
    expect(result.durationMs).toBeLessThan(2000);
    const again = await runCheck(command('touch /should-not-run'), controller.signal);
    expect(again).toMatchObject({ ok: false, detail: 'cancelled' });
  });

  it('does not wait for a background process that keeps the output open', async () => {
    const pidFile = join(dir, 'background');
    const started = Date.now();
    try {
      const result = await runCheck(command(`sleep 5 & echo $! > ${pidFile}; echo started`));
      expect(result).toMatchObject({ ok: true, detail: 'exit code 0: started' });
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      const pid = Number(await readFile(pidFile, 'utf8').catch(() => '0'));
      if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('http and prometheus checks', () => {
  let server: Server;
  let base: string;
  const routes = new Map<string, Handler>();

  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const handler = routes.get(
        url.pathname === '/api/v1/query' ? `query:${url.searchParams.get('query')}` : url.pathname,
      );
      if (handler) handler(req, res);
      else res.writeHead(404).end('no route');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    routes.set('/ok', (_req, res) => res.writeHead(204).end());
    routes.set('/broken', (_req, res) => res.writeHead(500).end('database is down'));
    routes.set('/slow', (_req, res) => {
      const timer = setTimeout(() => res.end('late'), 5000);
      res.on('close', () => clearTimeout(timer));
    });
    const json =
      (status: number, body: unknown): Handler =>
      (_req, res) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const vector = (...values: string[]) => ({
      status: 'success',
      data: {
        resultType: 'vector',
        result: values.map((v, i) => ({ metric: { instance: `n${i}` }, value: [1700000000, v] })),
      },
    });
    routes.set('query:empty', json(200, vector()));
    routes.set('query:zero', json(200, vector('0', '0')));
    routes.set('query:five', json(200, vector('0', '5')));
    routes.set('query:nan', json(200, vector('NaN')));
    routes.set(
      'query:scalar0',
      json(200, { status: 'success', data: { resultType: 'scalar', result: [1, '0'] } }),
    );
    routes.set(
      'query:bad(',
      json(400, { status: 'error', errorType: 'bad_data', error: 'parse error at char 5' }),
    );
    routes.set('query:html', (_req, res) => res.writeHead(200).end('<html>proxy login</html>'));
    routes.set('query:unavailable', json(503, vector()));
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const http = (path: string, timeoutMs = 2000): CheckSpec => ({
    type: 'http',
    name: 'http',
    url: `${base}${path}`,
    timeoutMs,
  });
  const prom = (query: string, timeoutMs = 2000): CheckSpec => ({
    type: 'prometheus',
    name: 'prom',
    url: `${base}/`,
    query,
    timeoutMs,
  });

  it('http passes on 2xx', async () => {
    expect(await runCheck(http('/ok'))).toMatchObject({ ok: true, detail: 'HTTP 204 No Content' });
  });

  it('http fails on 500 with the status and the body', async () => {
    expect(await runCheck(http('/broken'))).toMatchObject({
      ok: false,
      detail: 'HTTP 500 Internal Server Error: database is down',
    });
  });

  it('http fails on timeout', async () => {
    const started = Date.now();
    const result = await runCheck(http('/slow', 200));
    expect(result).toMatchObject({ ok: false, detail: 'timed out after 200ms' });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('http fails when the connection is refused', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const result = await runCheck({
      type: 'http',
      name: 'x',
      url: `http://127.0.0.1:${port}/`,
      timeoutMs: 2000,
    });
    expect(result).toMatchObject({ ok: false, detail: 'request failed: ECONNREFUSED' });
  });

  it('prometheus passes on an empty result and on zeros', async () => {
    expect(await runCheck(prom('empty'))).toMatchObject({ ok: true, detail: 'no samples' });
    expect(await runCheck(prom('zero'))).toMatchObject({ ok: true, detail: '2 samples, all 0' });
    expect(await runCheck(prom('scalar0'))).toMatchObject({ ok: true, detail: '1 sample, all 0' });
  });

  it('prometheus fails on a non-zero value and shows it', async () => {
    expect(await runCheck(prom('five'))).toMatchObject({
      ok: false,
      detail: 'non-zero value: {instance="n1"} = 5',
    });
    expect(await runCheck(prom('nan'))).toMatchObject({
      ok: false,
      detail: 'non-zero value: {instance="n0"} = NaN',
    });
  });

  it('prometheus fails on an error status, bad JSON, a non-2xx answer and a timeout', async () => {
    expect(await runCheck(prom('bad('))).toMatchObject({
      ok: false,
      detail: 'query failed (status "error"): bad_data: parse error at char 5',
    });
    expect(await runCheck(prom('html'))).toMatchObject({
      ok: false,
      detail: 'HTTP 200: answer is not JSON: <html>proxy login</html>',
    });
    expect(await runCheck(prom('unavailable'))).toMatchObject({
      ok: false,
      detail: 'HTTP 503: no samples',
    });
    routes.set('query:hang', routes.get('/slow')!);
    expect(await runCheck(prom('hang', 200))).toMatchObject({
      ok: false,
      detail: 'timed out after 200ms',
    });
  });

  it('judgePrometheus refuses answers it does not understand', () => {
    expect(judgePrometheus(null).ok).toBe(false);
    expect(
      judgePrometheus({ status: 'success', data: { resultType: 'string', result: [1, 'x'] } }).ok,
    ).toBe(false);
    expect(
      judgePrometheus({ status: 'success', data: { resultType: 'vector', result: [{}] } }),
    ).toEqual({
      ok: false,
      detail: 'non-zero value: {} = malformed sample',
    });
  });

  it('runChecks runs in order and stops at the first failure', async () => {
    const outcome = await runChecks([http('/ok'), http('/broken'), command('echo never')]);
    expect(outcome.ok).toBe(false);
    expect(outcome.results.map((r) => r.detail)).toEqual([
      'HTTP 204 No Content',
      'HTTP 500 Internal Server Error: database is down',
    ]);
    expect(await runChecks([])).toEqual({ ok: true, results: [] });
    expect((await runChecks([http('/ok'), prom('zero')])).ok).toBe(true);
  });
});
