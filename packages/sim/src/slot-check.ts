/**
 * The check made at every Reboot call: does the rebooting node hold a slot? Answered by the
 * testkit's HolderObserver (a separate etcd watcher) and by a direct read of the node's marker
 * with the simulator's own client, never by the code under test.
 */
import type { HolderObserver } from '@sluice/testkit';
import type { RebootEntry } from './invariants.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Reads the create revision of a node's holding marker from etcd, or null when there is none.
 * Throws when etcd cannot be reached (the check then tries again).
 */
export type MarkerReader = (node: string) => Promise<number | null>;

/**
 * Fills in `slotSeen` and `admissionRevision` of a fresh reboot entry.
 *
 * - `admissionRevision`: the marker's create revision, read from etcd right after the call
 *   (retried while etcd is unreachable), and `admissionReadAt`, when that read answered. The
 *   marker cannot have appeared after the call: the rebooting agent was killed at the call and
 *   only an agent writes its own marker; nor can it have gone: only its own release (the node is
 *   down) or an operator removes it. An operator's force-unlock that began before the read
 *   answered may have; the invariant checker then asks the timeline.
 * - `slotSeen`: whether the HolderObserver shows the marker. Watchers lag the agents by
 *   milliseconds, and much more after an etcd outage or in a busy process, so this waits up to
 *   `timeoutMs`.
 *
 * Callers keep the machine down until this resolves, which is what makes both answers sound.
 */
export async function confirmSlot(
  entry: RebootEntry,
  observer: HolderObserver,
  readMarker: MarkerReader,
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = entry.downAt + timeoutMs;
  const read = (async () => {
    for (;;) {
      try {
        entry.admissionRevision = await readMarker(entry.node);
        entry.admissionReadAt = Date.now();
        return;
      } catch {
        if (Date.now() > deadline) return;
        await sleep(200);
      }
    }
  })();
  for (;;) {
    if (observer.holders.includes(entry.node)) {
      entry.slotSeen = true;
      entry.slotSeenAfterMs = Date.now() - entry.downAt;
      break;
    }
    if (Date.now() > deadline) {
      entry.slotSeen = false;
      break;
    }
    await sleep(10);
  }
  await read;
}
