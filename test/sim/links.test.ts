/**
 * The simulator's network faults against a real 3-member etcd: a member cut off by the PeerNet
 * loses the cluster (it can no longer commit, the others elect a leader and go on) and rejoins
 * when healed; an AgentLink cuts one client off from every member while others carry on.
 */
import { AgentLink, PeerNet } from '@sluice/sim';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let etcd: EtcdCluster;
let peers: PeerNet;
const clients: Etcd3[] = [];

beforeAll(async () => {
  peers = new PeerNet();
  etcd = await startEtcd({ members: 3, peerRoute: peers.route });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await etcd?.stop();
  await peers?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client of its own, with short deadlines, so a failure shows soon. */
function client(hosts: string[]): Etcd3 {
  const c = new Etcd3({
    hosts,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 1500 }),
  });
  clients.push(c);
  return c;
}

/** True when a put through `c` commits. */
async function commits(c: Etcd3, key: string): Promise<boolean> {
  return c
    .put(key)
    .value('x')
    .then(
      () => true,
      () => false,
    );
}

async function leader(): Promise<number> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    for (const [i] of etcd.members.entries()) {
      if ((await etcd.metric('etcd_server_is_leader', i).catch(() => 0)) === 1) return i;
    }
    await sleep(100);
  }
  throw new Error('no leader');
}

describe('PeerNet', () => {
  it('cuts one member off from its peers, and joins it again', async () => {
    const cut = await leader();
    const name = etcd.members[cut]!.name;
    const others = etcd.members.filter((_, i) => i !== cut);
    const inside = client([etcd.members[cut]!.endpoint]);
    const outside = client(others.map((m) => m.endpoint));
    expect(await commits(inside, '/pn/before')).toBe(true);

    peers.isolate(name);
    expect(peers.cut).toEqual([name]);
    // The others elect a leader among themselves and commit; the cut-off member cannot.
    let ok = false;
    for (let i = 0; i < 40 && !ok; i++) ok = await commits(outside, '/pn/outside');
    expect(ok).toBe(true);
    expect(await leader()).not.toBe(cut);
    expect(await commits(inside, '/pn/inside')).toBe(false);

    peers.rejoin(name);
    expect(peers.cut).toEqual([]);
    let back = false;
    for (let i = 0; i < 40 && !back; i++) {
      back = await commits(inside, '/pn/after');
      if (!back) await sleep(250);
    }
    expect(back).toBe(true);
    // Every connection between members was told apart by its dialler.
    expect(peers.unknown).toBe(0);
  });
});

describe('AgentLink', () => {
  it('cuts one client off from every member while others carry on', async () => {
    const link = await AgentLink.start(etcd.endpoints);
    try {
      const agent = client(link.endpoints);
      const other = client(etcd.endpoints);
      expect(await commits(agent, '/al/a')).toBe(true);
      link.reset();
      link.blackhole();
      expect(link.blackholed).toBe(true);
      expect(await commits(agent, '/al/b')).toBe(false);
      expect(await commits(other, '/al/c')).toBe(true);
      link.clear();
      let back = false;
      for (let i = 0; i < 40 && !back; i++) {
        back = await commits(agent, '/al/d');
        if (!back) await sleep(250);
      }
      expect(back).toBe(true);
    } finally {
      await link.stop();
    }
  });
});
