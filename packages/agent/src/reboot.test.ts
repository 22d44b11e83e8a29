import { describe, expect, it } from 'vitest';
import { shutdownBlockers } from './reboot.js';

describe('shutdownBlockers', () => {
  it('names block locks on shutdown held by others; delay locks and other locks are not blockers', () => {
    const lock = (what: string[], mode: string, who: string, pid: number) => ({
      what,
      who,
      why: `${who} at work`,
      mode,
      uid: 0,
      pid,
    });
    expect(
      shutdownBlockers(
        [
          lock(['shutdown', 'sleep'], 'block', 'backup', 812),
          lock(['shutdown'], 'delay', 'NetworkManager', 700),
          lock(['sleep'], 'block', 'GNOME Shell', 900),
          lock(['shutdown'], 'block', 'sluiced', 42),
        ],
        42,
      ),
    ).toEqual(['"backup" (backup at work), pid 812']);
  });
});
