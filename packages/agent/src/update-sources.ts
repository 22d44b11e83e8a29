/**
 * Update sources that need sluice's own adapters: update_engine over D-Bus, and reboot requests
 * made with `sluicectl request-reboot` (a key in etcd). Both implement the UpdateSource interface
 * of sources.ts.
 */
import { type GroupSettings, RebootRequestSchema } from '@sluice/core';
import { NEED_REBOOT, UpdateEngineClient, type UpdateStatus } from '@sluice/dbus';
import type { UpdateSignal, UpdateSource } from './sources.js';

const NOT_NEEDED = (source: string, detail: string): UpdateSignal => ({
  needed: false,
  source,
  detail,
});

/**
 * Follows update_engine (`com.coreos.update1`): needed while it reports
 * UPDATE_STATUS_UPDATED_NEED_REBOOT. Survives update_engine restarts and bus reconnects (the
 * client handles both). While update_engine is unreachable the last reading stands; before it
 * has ever answered, no reboot is needed.
 */
export class UpdateEngineSource implements UpdateSource {
  readonly name = 'update-engine';
  #client: UpdateEngineClient | null = null;
  #signal: UpdateSignal = NOT_NEEDED('update-engine', 'no status yet');
  /** Whether update_engine has answered at least once. */
  #seen = false;

  constructor(
    private readonly address: string,
    private readonly onProblem?: (error: Error) => void,
  ) {}

  static toSignal(status: UpdateStatus | null): UpdateSignal {
    if (!status) return NOT_NEEDED('update-engine', 'update_engine not reachable');
    const needed = status.currentOperation === NEED_REBOOT;
    return {
      needed,
      source: 'update-engine',
      detail: status.currentOperation,
      ...(status.newVersion ? { version: status.newVersion } : {}),
    };
  }

  /** Connects with a new client; after a failure (bus down), call it again to retry. */
  async start(onChange: (s: UpdateSignal) => void): Promise<void> {
    this.#client?.close();
    const client = new UpdateEngineClient({ address: this.address });
    this.#client = client;
    if (this.onProblem) client.on('problem', this.onProblem);
    const emit = () => {
      if (this.#client !== client) return;
      const status = client.serviceUp ? (client.status ?? null) : null;
      // update_engine restarting says nothing about the staged update: keep the last reading
      // rather than cancel a reboot that is queued or under way.
      if (status === null && this.#seen) return;
      this.#seen ||= status !== null;
      this.#signal = UpdateEngineSource.toSignal(status);
      onChange(this.#signal);
    };
    client.on('status', emit);
    client.on('service-down', emit);
    client.on('service-up', emit);
    await client.start();
    emit();
  }

  current(): UpdateSignal {
    return this.#signal;
  }

  async close(): Promise<void> {
    this.#client?.close();
    this.#client = null;
  }
}

/**
 * A reboot requested for this node with `sluicectl request-reboot`: needed while the key
 * `groups/<g>/requests/<node>` exists and its `expiresAt` (if any) has not passed. Follows that
 * one key through the group's settings port and turns not-needed when the request lapses; the
 * agent deletes it in the write that confirms its slot right before the reboot that serves it.
 */
export class ManualRequestSource implements UpdateSource {
  readonly name = 'manual';
  #signal: UpdateSignal = NOT_NEEDED('manual', 'no request');
  /** Fires when the current request lapses (its `expiresAt`). */
  #expiry: NodeJS.Timeout | undefined;

  constructor(private readonly settings: GroupSettings) {}

  #apply(value: string | null, onChange: (s: UpdateSignal) => void): void {
    clearTimeout(this.#expiry);
    if (value === null) {
      this.#signal = NOT_NEEDED('manual', 'no request');
    } else {
      let reason = 'requested with sluicectl';
      let expiresAt: number | null = null;
      try {
        const parsed = RebootRequestSchema.safeParse(JSON.parse(value));
        if (parsed.success) {
          reason = parsed.data.reason || reason;
          if (parsed.data.expiresAt) expiresAt = Date.parse(parsed.data.expiresAt);
        }
      } catch {
        // Any value is a request; an unreadable one just has no reason to show.
      }
      if (expiresAt !== null && expiresAt <= Date.now()) {
        // Lapsed: its lease may not have run out in etcd yet, but it asks for nothing now.
        this.#signal = NOT_NEEDED('manual', 'the request expired');
      } else {
        this.#signal = { needed: true, source: 'manual', detail: reason };
        if (expiresAt !== null) {
          const delay = Math.min(expiresAt - Date.now() + 1, 2 ** 31 - 1);
          this.#expiry = setTimeout(() => this.#apply(value, onChange), delay);
          this.#expiry.unref?.();
        }
      }
    }
    onChange(this.#signal);
  }

  async start(onChange: (s: UpdateSignal) => void): Promise<void> {
    await this.settings.followRequest((value) => this.#apply(value, onChange));
  }

  current(): UpdateSignal {
    return this.#signal;
  }

  async close(): Promise<void> {
    // The settings port stops following with the agent.
    clearTimeout(this.#expiry);
  }
}
