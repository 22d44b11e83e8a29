/**
 * The guard against reboot loops. An update that a reboot does not apply (a kernel that does not
 * boot and rolls back, a staged deployment that is thrown away, a soft reboot where a full one was
 * needed) is still reported as needed after the reboot, and the node would reboot for it again and
 * again, taking a slot each time. The guard counts the reboots in a row for the same update, in a
 * small file next to the instance token (it must survive the reboots it counts), and once an
 * update is still needed after `limit` of them, this node stops rebooting for it and says why. The
 * group goes on: other nodes are not held up by one node's loop.
 *
 * The count starts again when the update changes (a newer version), and is cleared when, after a
 * boot, no source needs a reboot. To let the node try again by hand, remove the file.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { UpdateInfo } from '@sluice/core';

/** What the guard keeps on disk. */
interface GuardRecord {
  /** Which update the reboots were for (see {@link RebootLoopGuard.key}). */
  key: string;
  /** How many reboots in a row were for it. */
  count: number;
  /** When the last of them was asked for. */
  at: string;
}

/** Counts reboots in a row for the same update; see the module comment. */
export class RebootLoopGuard {
  #record: GuardRecord | null = null;

  constructor(
    /** Where the count is kept, e.g. `/var/lib/sluice/reboot-loop.json`. */
    readonly file: string,
    /** After this many reboots in a row for one update, stop; 0 turns the guard off. */
    readonly limit: number,
  ) {}

  /** What identifies "the same update": the source and its version, or its detail. */
  static key(update: UpdateInfo): string {
    return `${update.source}: ${update.version ?? update.detail}`;
  }

  /** Reads the file. A missing file is a count of 0; an unreadable one is reported and reset. */
  async load(): Promise<string | null> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      return code === 'ENOENT' ? null : `cannot read ${this.file}: ${code ?? String(error)}`;
    }
    try {
      const parsed = JSON.parse(text) as Partial<GuardRecord>;
      if (typeof parsed.key === 'string' && Number.isInteger(parsed.count)) {
        this.#record = { key: parsed.key, count: parsed.count!, at: String(parsed.at ?? '') };
        return null;
      }
    } catch {
      // Fall through: reset below.
    }
    this.#record = null;
    return `${this.file} is not a reboot count; starting from 0`;
  }

  /** How many reboots in a row were for `update` (0 for any other). */
  count(update: UpdateInfo): number {
    return this.#record?.key === RebootLoopGuard.key(update) ? this.#record.count : 0;
  }

  /**
   * Why the node must not reboot for `update` again, or null when it may: it is still needed
   * after `limit` reboots in a row.
   */
  halted(update: UpdateInfo): string | null {
    if (this.limit <= 0) return null;
    const count = this.count(update);
    if (count < this.limit) return null;
    return `reboot loop: ${RebootLoopGuard.key(update)} is still needed after ${count} reboot${count === 1 ? '' : 's'} in a row; this node no longer reboots for it (a newer update, or removing ${this.file}, lets it try again)`;
  }

  /**
   * Counts a reboot for `update`, right before it is asked for (the machine may go down before a
   * later write). Resolves with a function that takes the count back, for a reboot call that then
   * failed. Rejects when it cannot write.
   */
  async noteReboot(update: UpdateInfo, now = new Date()): Promise<() => Promise<void>> {
    const before = this.#record;
    const key = RebootLoopGuard.key(update);
    const count = before?.key === key ? before.count + 1 : 1;
    this.#record = { key, count, at: now.toISOString() };
    await this.#write();
    return async () => {
      this.#record = before;
      if (before === null) await rm(this.file, { force: true });
      else await this.#write();
    };
  }

  /** Forgets the count: after a boot, nothing needs a reboot any more. */
  async clear(): Promise<void> {
    if (this.#record === null) return;
    this.#record = null;
    await rm(this.file, { force: true });
  }

  async #write(): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    await writeFile(tmp, `${JSON.stringify(this.#record)}\n`, { mode: 0o600 });
    await rename(tmp, this.file);
  }
}
