/**
 * The FleetLock protocol as sluice-fleetlock speaks it, with no I/O: the two endpoints, the
 * header, the request body, and the fixed list of error kinds with their HTTP status codes.
 *
 * ```
 * POST /v1/pre-reboot     take (or keep) a reboot slot for client_params.id; recursive
 * POST /v1/steady-state   give the slot back, or the place in the queue; always 200 once valid
 * header  fleet-lock-protocol: true
 * body    {"client_params": {"id": "<node id>", "group": "<group>"}}   (unknown fields ignored)
 * ```
 *
 * Success is 200. Every other answer carries `{"kind": "...", "value": "..."}`: `kind` is one of
 * `FAILURE_KINDS` (clients such as Zincati use it as a metric label, so the list is short and
 * fixed) and `value` says what happened in words, e.g. the place in the queue or when the window
 * opens. Clients send no Content-Type, so none is required.
 */
import { isValidName } from '@sluice/core';
import { z } from 'zod';

/** The header every request must carry, with the value `true`. */
export const PROTOCOL_HEADER = 'fleet-lock-protocol';

/** The two endpoints. */
export const PATHS = {
  preReboot: '/v1/pre-reboot',
  steadyState: '/v1/steady-state',
} as const;

/** Which endpoint a request is for. */
export type Endpoint = keyof typeof PATHS;

/** The largest request body read, in bytes; a client's body is well under 1 KiB. */
export const MAX_BODY_BYTES = 16 * 1024;

/** Group names the protocol allows. */
const GROUP = /^[a-zA-Z0-9.-]+$/;

/**
 * Every kind of non-2xx answer, with its status and when it is sent. The list is the protocol's
 * contract with operators: it is documented in docs/fleetlock.md and never grows silently.
 */
export const FAILURE_KINDS = {
  bad_request: {
    status: 400,
    when: 'the body is not JSON, or client_params.id or .group is missing, empty or malformed',
  },
  missing_header: {
    status: 400,
    when: 'the fleet-lock-protocol: true header is missing or not "true"',
  },
  body_too_large: { status: 413, when: `the body is longer than ${MAX_BODY_BYTES} bytes` },
  not_found: { status: 404, when: 'the path is neither /v1/pre-reboot nor /v1/steady-state' },
  method_not_allowed: { status: 405, when: 'the method is not POST' },
  unknown_group: {
    status: 404,
    when: 'the group is not `default` and has no keys in etcd (a typo?), unless --allow-new-groups',
  },
  full: {
    status: 409,
    when: 'every slot is taken or others are ahead: the value gives the place in the queue, which is kept',
  },
  window_closed: {
    status: 409,
    when: "the group's reboot window is closed: the value says when it opens",
  },
  paused: { status: 409, when: 'an operator paused the group (sluicectl pause)' },
  halted: {
    status: 409,
    when: 'the group lost holders beyond its loss budget; it stays shut until an operator clears them',
  },
  lost_slot: {
    status: 409,
    when: "this id's earlier slot was declared lost and is not cleared yet",
  },
  id_conflict: {
    status: 409,
    when: 'the id belongs to a sluiced agent or a manual lock (sluicectl lock), which are left alone',
  },
  invalid_settings: {
    status: 500,
    when: 'a group setting in etcd does not parse (max, windows, loss-budget): nobody is admitted',
  },
  clock_skew: { status: 503, when: "the server's clock is too far from etcd's to judge windows" },
  unavailable: { status: 503, when: 'etcd cannot be reached, or refused or denied the request' },
  internal: { status: 500, when: 'a bug in sluice-fleetlock; the log has the details' },
} as const satisfies Record<string, { status: number; when: string }>;

/** A kind of non-2xx answer. */
export type FailureKind = keyof typeof FAILURE_KINDS;

/** Every answer's body: `{kind, value}`; the success kinds are `ok` (pre-reboot) and `released`. */
export interface Reply {
  status: number;
  kind: FailureKind | 'ok';
  value: string;
}

/** A failure reply of `kind`, with its fixed status. */
export function failure(kind: FailureKind, value: string): Reply {
  return { status: FAILURE_KINDS[kind].status, kind, value };
}

/** A 200 reply. */
export function success(value: string): Reply {
  return { status: 200, kind: 'ok', value };
}

/** What a valid request names: the client's id and group. */
export interface ClientParams {
  id: string;
  group: string;
}

const BodySchema = z.object({
  client_params: z.object({
    id: z.string().min(1, 'must not be empty'),
    group: z.string().min(1, 'must not be empty'),
  }),
});

/**
 * Parses a request body. Unknown fields are ignored; `id` and `group` must be non-empty strings,
 * the group must match the protocol's `^[a-zA-Z0-9.-]+$`, and both must be usable in an etcd key
 * as sluice node and group names. The failure's value names the field at fault.
 */
export function parseBody(
  text: string,
): { ok: true; params: ClientParams } | { ok: false; reply: Reply } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reply: failure('bad_request', 'the body is not valid JSON') };
  }
  const parsed = BodySchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.length > 0 ? issue.path.join('.') : 'body';
    return { ok: false, reply: failure('bad_request', `${field}: ${issue.message}`) };
  }
  const { id, group } = parsed.data.client_params;
  if (!GROUP.test(group) || !isValidName(group)) {
    return {
      ok: false,
      reply: failure(
        'bad_request',
        `client_params.group ${quote(group)} is not a group name (letters, digits, "." and "-", starting with a letter or digit)`,
      ),
    };
  }
  if (!isValidName(id)) {
    return {
      ok: false,
      reply: failure(
        'bad_request',
        `client_params.id ${quote(id)} is not a node id (letters, digits, . _ : @ -, starting with a letter or digit, at most 253)`,
      ),
    };
  }
  return { ok: true, params: { id, group } };
}

/** A client's text, quoted and cut short for a reply or a log line. */
function quote(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
}
