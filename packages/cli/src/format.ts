/**
 * Human output: aligned tables, times with their age, durations as people say them, and the
 * status block `sluicectl status` and `watch` print. JSON output does not go through here.
 */
import type { CanaryStatus, GroupStatus } from '@sluice/core';

/** How max came down, for holders above it: `max went 2 → 1`, or without the old value. */
export function lowered(status: GroupStatus): string {
  return status.maxBefore !== null && status.maxBefore > (status.max ?? 0)
    ? `max went ${status.maxBefore} → ${status.max}`
    : `max was lowered to ${status.max}`;
}

/**
 * Formats rows as a table with a header line, columns separated by two spaces and padded to the
 * widest cell. The last column is not padded, so lines carry no trailing spaces.
 */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/**
 * A duration the way people read it: `45s`, `3m20s`, `2h05m`, `3d4h`. Rounded down to the
 * second; negative durations are shown as `0s`.
 */
export function human(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

/** An instant as `2025-11-25 14:03:00Z`: ISO-8601 in UTC, to the second, easy to scan. */
export function instant(iso: string | Date): string {
  const d = typeof iso === 'string' ? new Date(iso) : iso;
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** A past instant with its age: `2025-11-25 14:03:00Z (3m20s ago)`; `-` for none. */
export function since(iso: string | null, now: Date): string {
  if (!iso) return '-';
  return `${instant(iso)} (${human(now.getTime() - Date.parse(iso))} ago)`;
}

/** A future instant with the time to go: `2025-11-25 22:00:00Z (in 7h56m)`. */
export function until(iso: string | Date, now: Date): string {
  const t = typeof iso === 'string' ? Date.parse(iso) : iso.getTime();
  return `${instant(iso)} (in ${human(t - now.getTime())})`;
}

/** The window line of a status: `open until …`, `closed until …`, or `always open`. */
export function windowLine(status: GroupStatus, now: Date): string {
  const w = status.window;
  if (!w.open && status.errors.some((e) => e.key.endsWith('/blackouts'))) {
    return 'closed: the blackouts are invalid (see errors)';
  }
  if (!w.open && status.errors.some((e) => e.key.endsWith('/windows'))) {
    return 'closed: the window spec is invalid (see errors)';
  }
  const off = w.blackouts ? `; blackouts: ${w.blackouts}` : '';
  const change = w.nextChange ? `, ${w.open ? 'closes' : 'opens'} ${until(w.nextChange, now)}` : '';
  if (w.blackout)
    return `closed: blackout ${w.blackout}${change}  [${w.canonical ?? 'always'}${off}]`;
  if (w.spec === null && !w.blackouts) return 'always open (no window set)';
  const state = w.open ? 'open' : 'closed';
  return `${state}${change}  [${w.canonical ?? 'always'}${off}]`;
}

/**
 * What can be admitted now, with the one reason when it is nothing: `2`, or
 * `0: paused by ann@ops since 2026-12-01 15:34:00Z (5m ago): BIOS update`.
 */
export function availableLine(status: GroupStatus, now: Date): string {
  const b = status.blocker;
  if (!b) return String(status.available);
  switch (b.kind) {
    case 'invalid-value':
      return `0: nobody is admitted while ${b.key} is invalid (see errors)`;
    case 'halted': {
      const lost = b.lost.length > 0 ? ` (lost: ${b.lost.join(', ')})` : '';
      return `0: halted${b.since ? ` since ${since(b.since, now)}` : ''}: ${b.reason}${lost}; unlock the lost node with --force, then resume`;
    }
    case 'paused':
      return `0: paused${b.by ? ` by ${b.by}` : ''}${b.since ? ` since ${since(b.since, now)}` : ''}: ${b.reason}`;
    case 'window-closed':
      return b.opensAt
        ? `0: the reboot window is closed until ${until(b.opensAt, now)}`
        : '0: the reboot window is closed and does not open in the next 16 days';
    case 'canary':
      return `0: ${b.detail}`;
    case 'full':
      if (b.max === 0) return '0: max is 0, admissions are stopped';
      return status.holdersOverMax > 0
        ? `0: ${b.holders} holders for max ${b.max}, ${status.holdersOverMax} admitted before ${lowered(status)} (draining)`
        : `0: all ${b.max} slot(s) taken`;
  }
}

/** The canary line of a status: the setting, and where the current canary stands. */
export function canaryLine(canary: CanaryStatus, now: Date): string {
  const setting = `${canary.count} per new version, soak ${canary.soak}`;
  if (canary.version === null) return `${setting}; no version canaried yet`;
  const seats = `${canary.back.length} of ${canary.seated.length} back`;
  switch (canary.phase) {
    case 'failed':
      return `${setting}; ${canary.version} FAILED: ${canary.failed.map((f) => `${f.node} ${f.why}`).join('; ')} (sluicectl canary reset, or skip)`;
    case 'soaking':
      return `${setting}; ${canary.version} soaking until ${until(canary.soakEndsAt!, now)} (${canary.seated.join(', ')})`;
    case 'done':
      return `${setting}; ${canary.version} done (${canary.seated.join(', ')})`;
    default:
      return `${setting}; ${canary.version} rebooting, ${seats} (${canary.seated.join(', ') || 'no seat taken'})`;
  }
}

/** The domain-max line of a status: the limit, and which domains are full. */
export function domainsLine(status: GroupStatus): string {
  const full = status.domains.filter((d) => d.full).map((d) => d.domain);
  const limit = `at most ${status.domainMax} holder(s) per failure domain`;
  return full.length > 0 ? `${limit}; full: ${full.join(', ')}` : limit;
}

/**
 * A group's status for people, modelled on `locksmithctl status`: the numbers first, then the
 * holders, the waiters and any unreadable keys.
 */
export function formatStatus(status: GroupStatus, now: Date): string {
  const p = status.paused;
  const paused = p
    ? `yes${p.by ? `, by ${p.by}` : ''}${p.since ? `, since ${since(p.since, now)}` : ''}: ${p.reason}`
    : 'no';
  const lines = [
    `Group:      ${status.group}`,
    `Max:        ${status.max ?? 'invalid (see errors; nobody is admitted)'}`,
    `Available:  ${availableLine(status, now)}`,
    `Paused:     ${paused}`,
    `Window:     ${windowLine(status, now)}`,
    ...(status.domainMax === null ? [] : [`Domains:    ${domainsLine(status)}`]),
    ...(status.canary === null ? [] : [`Canary:     ${canaryLine(status.canary, now)}`]),
    `Nodes:      ${status.registered} registered`,
    '',
  ];
  // The failure domain of each node, when the group limits them or a node has one.
  const domains =
    status.domainMax !== null || [...status.holders, ...status.waiting].some((n) => n.domain);
  const domainCell = (n: { domain: string | null }) => (domains ? [n.domain ?? '-'] : []);
  const domainHead = domains ? ['DOMAIN'] : [];
  if (status.holders.length === 0) {
    lines.push('Holders:    none');
  } else {
    lines.push(
      'HOLDERS',
      table(
        ['NODE', 'HOSTNAME', ...domainHead, 'STATE', 'SINCE', 'LEASE LEFT', 'REASON'],
        status.holders.map((h) => [
          h.node,
          h.hostname || (h.client ? `(${h.client})` : '-'),
          ...domainCell(h),
          h.aboveMax ? `${h.state} (above max)` : h.state,
          since(h.since, now),
          h.leaseSecondsLeft === null ? '-' : human(h.leaseSecondsLeft * 1000),
          h.reason || '-',
        ]),
      ),
    );
    const above = status.holders.filter((h) => h.aboveMax).map((h) => h.node);
    if (above.length > 0) {
      lines.push(
        `${above.join(', ')} ${above.length === 1 ? 'was' : 'were'} admitted before ${lowered(status)}; draining: nobody new is admitted until the holders are fewer than max`,
      );
    }
    for (const h of status.holders.filter((h) => h.problem && h.state !== 'lost')) {
      lines.push(`${h.node}: ${h.problem}`);
    }
  }
  lines.push('');
  if (status.waiting.length === 0) {
    lines.push('Waiting:    none');
  } else {
    lines.push(
      'WAITING',
      table(
        ['POS', 'NODE', 'HOSTNAME', ...domainHead, 'SINCE', 'REASON'],
        status.waiting.map((w) => [
          String(w.position),
          w.node,
          w.hostname || (w.client ? `(${w.client})` : '-'),
          ...domainCell(w),
          since(w.since, now),
          w.reason || '-',
        ]),
      ),
    );
    for (const w of status.waiting.filter((w) => w.heldBack)) {
      const what = w.heldBack?.startsWith('its failure domain')
        ? 'is held back'
        : 'waits for the next window';
      lines.push(`${w.node} ${what}: ${w.heldBack}`);
    }
  }
  if (status.nodeProblems.length > 0) {
    lines.push(
      '',
      'NODE PROBLEMS',
      table(
        ['NODE', 'HOSTNAME', 'PROBLEM'],
        status.nodeProblems.map((p) => [p.node, p.hostname || '-', p.problem]),
      ),
    );
  }
  if (status.requests.length > 0) {
    lines.push(
      '',
      'REQUESTS',
      table(
        ['NODE', 'SINCE', 'EXPIRES', 'BY', 'REASON'],
        status.requests.map((r) => [
          r.node,
          since(r.requestedAt, now),
          r.expiresAt ? until(r.expiresAt, now) : 'never',
          r.by || '-',
          r.reason || '-',
        ]),
      ),
    );
  }
  if (status.errors.length > 0) {
    lines.push(
      '',
      'ERRORS',
      table(
        ['KEY', 'PROBLEM'],
        status.errors.map((e) => [e.key, e.message]),
      ),
    );
  }
  return lines.join('\n');
}
