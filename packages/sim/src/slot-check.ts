/**
 * The check made at every Reboot call: does the rebooting node hold a slot, according to two
 * watchers that are independent of the code under test?
 */
import type { HolderObserver } from '@sluice/testkit';
import type { RebootEntry } from './invariants.js';
import type { GroupTimeline } from './timeline.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Fills in `slotSeen` and `admissionRevision` of a fresh reboot entry: the HolderObserver must
 * show the node's marker, and the timeline must have an open marker stint for it (whose create
 * revision is the admission). Watchers lag the agents a little, and after an etcd outage they may
 * need a while to reconnect, so this waits up to `timeoutMs`. Callers keep the machine down until
 * it resolves, so a marker seen meanwhile cannot be one written after the reboot.
 */
export async function confirmSlot(
  entry: RebootEntry,
  timeline: GroupTimeline,
  observer: HolderObserver,
  timeoutMs = 40_000,
): Promise<void> {
  const deadline = entry.downAt + timeoutMs;
  for (;;) {
    const stint = timeline.openMarker(entry.node);
    if (stint && entry.admissionRevision === null) entry.admissionRevision = stint.createdRevision;
    if (entry.slotSeen === null && observer.holders.includes(entry.node)) {
      entry.slotSeen = true;
      entry.slotSeenAfterMs = Date.now() - entry.downAt;
    }
    if (entry.slotSeen && entry.admissionRevision !== null) return;
    if (Date.now() > deadline) {
      entry.slotSeen ??= false;
      return;
    }
    await sleep(10);
  }
}
