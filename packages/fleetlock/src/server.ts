/**
 * The HTTP side of sluice-fleetlock: routing, the protocol header, bounded bodies, JSON replies,
 * metrics and one log line per answer. What the endpoints do is in `service.ts`.
 *
 * Besides the two FleetLock endpoints it serves `GET /metrics` (Prometheus) and `GET /healthz`.
 * Any other method on a FleetLock path is refused with 405 and `Allow: POST`.
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Logger } from 'pino';
import type { FleetLockMetrics } from './metrics.js';
import {
  type Endpoint,
  failure,
  MAX_BODY_BYTES,
  PATHS,
  PROTOCOL_HEADER,
  parseBody,
  type Reply,
} from './protocol.js';
import type { FleetLockService, Outcome } from './service.js';

/** What the HTTP server needs. */
export interface ServerDeps {
  service: FleetLockService;
  metrics: FleetLockMetrics;
  logger: Logger;
  /** PEM certificate and key: serve HTTPS instead of HTTP. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
}

const ENDPOINTS = new Map<string, Endpoint>(
  Object.entries(PATHS).map(([endpoint, path]) => [path, endpoint as Endpoint]),
);

/** The metric label of an endpoint. */
const LABEL: Record<Endpoint, string> = { preReboot: 'pre-reboot', steadyState: 'steady-state' };

/** Reads a request body up to `limit` bytes: the text, or null when it is longer. */
function readBody(req: IncomingMessage, limit: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > limit) {
        // Stop keeping it, but read it all so the answer reaches a client still sending.
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(over ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, reply: Reply, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify({ kind: reply.kind, value: reply.value });
  res.writeHead(reply.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/**
 * Builds the server (not listening yet). Every request gets an answer in the protocol's form,
 * whatever it is; nothing a client sends can crash the process.
 */
export function createFleetLockServer(deps: ServerDeps): Server {
  const { service, metrics, logger } = deps;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET' && path === '/metrics') {
      const text = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType });
      res.end(text);
      return;
    }
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    const endpoint = ENDPOINTS.get(path);
    const label = endpoint ? LABEL[endpoint] : 'other';
    const started = performance.now();
    metrics.inFlight.inc();
    let outcome: Outcome;
    let id: string | undefined;
    let group: string | undefined;
    const headers: Record<string, string> = {};
    // Aborted when the client goes away before its answer (a long poll it gave up on).
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    try {
      if (!endpoint) {
        outcome = failure(
          'not_found',
          `no FleetLock endpoint at ${path.slice(0, 100)}; use ${PATHS.preReboot} or ${PATHS.steadyState}`,
        );
      } else if (req.method !== 'POST') {
        headers.allow = 'POST';
        outcome = failure(
          'method_not_allowed',
          `${req.method} is not allowed on ${path}: use POST`,
        );
      } else if (req.headers[PROTOCOL_HEADER] !== 'true') {
        outcome = failure(
          'missing_header',
          `the request needs the header "${PROTOCOL_HEADER}: true"`,
        );
      } else {
        const text = await readBody(req, MAX_BODY_BYTES);
        if (text === null) {
          outcome = failure('body_too_large', `the body is longer than ${MAX_BODY_BYTES} bytes`);
        } else {
          const parsed = parseBody(text);
          if (!parsed.ok) {
            outcome = parsed.reply;
          } else {
            ({ id, group } = parsed.params);
            const from = req.socket.remoteAddress ?? 'unknown';
            outcome =
              endpoint === 'preReboot'
                ? await service.preReboot(parsed.params, from, gone.signal)
                : await service.steadyState(parsed.params);
          }
        }
      }
    } catch (error) {
      logger.error({ err: error, endpoint: label, id, group }, 'request failed');
      outcome = failure('internal', 'sluice-fleetlock failed to answer; see its log');
    } finally {
      metrics.inFlight.dec();
    }
    // A body the server stopped reading: drain it so the answer is not lost in a reset.
    if (!req.complete) req.resume();
    send(res, outcome, headers);
    metrics.requests.inc({ endpoint: label, kind: outcome.kind });
    metrics.duration.observe({ endpoint: label }, (performance.now() - started) / 1000);
    if (outcome.granted && group) metrics.grants.inc({ group });
    const level = outcome.status >= 500 ? 'warn' : outcome.status === 200 ? 'info' : 'debug';
    logger[level](
      {
        endpoint: label,
        id,
        group,
        status: outcome.status,
        kind: outcome.kind,
        ...(outcome.granted ? { granted: true } : {}),
      },
      outcome.value,
    );
  };

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error) => {
      logger.error({ err: error }, 'request failed');
      send(res, failure('internal', 'sluice-fleetlock failed to answer; see its log'));
    });
  };
  const server = deps.tls
    ? createHttpsServer({ cert: deps.tls.cert, key: deps.tls.key }, listener)
    : createHttpServer(listener);
  // Zincati waits up to 30 minutes for an answer; a long poll must not be cut off by Node first.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  return server;
}
