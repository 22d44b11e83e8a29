/**
 * `sluicectl status` benchmark: the time an operator waits for `status` of a big group, Node's
 * start included, against a real local etcd. Each group size gets `--holders` holders and the rest
 * waiters (queue records on one lease, as agents write them); the bundle (dist-bundle/, built by
 * `npm run bundle`) and the built CLI are each run `--runs` times, for text and `-o json`.
 *
 *   npm run bench:status [-- --sizes 1000,20000 --runs 7 --json]
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { GroupKeys } from '@sluice/core';
import { startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1000,20000' },
    holders: { type: 'string', default: '5' },
    runs: { type: 'string', default: '7' },
    json: { type: 'boolean', default: false },
  },
});
const sizes = values.sizes.split(',').map(Number);
const holders = Number(values.holders);
const runs = Number(values.runs);
const repo = fileURLToPath(new URL('../..', import.meta.url));
const programs = [
  { name: 'bundle', file: `${repo}dist-bundle/sluicectl.mjs` },
  { name: 'built', file: `${repo}packages/cli/bin/sluicectl.mjs` },
].filter((p) => existsSync(p.file));
if (!programs.some((p) => p.name === 'bundle')) {
  process.stderr.write('bench:status: no dist-bundle/sluicectl.mjs; run `npm run bundle` first\n');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const etcd = await startEtcd();
const client = new Etcd3({ hosts: etcd.endpoints });
const results: { nodes: number; program: string; output: string; medianMs: number }[] = [];
try {
  for (const size of sizes) {
    const keys = new GroupKeys('/bench/', `g${size}`);
    await client.put(keys.max).value(String(holders));
    const lease = client.lease(3600, { autoKeepAlive: false });
    const leaseId = await lease.grant();
    const now = new Date().toISOString();
    // 100 puts per txn: etcd's default limit is 128 operations.
    for (let from = 0; from < size; from += 100) {
      const ops = [];
      for (let i = from; i < Math.min(size, from + 100); i++) {
        const node = `node-${String(i).padStart(6, '0')}`;
        const holding = i < holders;
        const record = {
          v: 1,
          node,
          hostname: node,
          state: holding ? 'rebooting' : 'waiting',
          since: now,
          enqueuedAt: now,
          reason: 'update 4081.2.0',
          toVersion: '4081.2.0',
        };
        ops.push(client.put(keys.queue(node)).value(JSON.stringify(record)).lease(leaseId));
        if (holding) ops.push(client.put(keys.holding(node)).value(JSON.stringify({ v: 1, node })));
      }
      await client
        .if(keys.max, 'Version', '>', 0)
        .then(...ops)
        .commit();
    }
    for (const program of programs) {
      for (const output of ['text', 'json']) {
        const args = [program.file, '--endpoints', etcd.endpoints.join(','), '--prefix', '/bench/'];
        args.push('--group', keys.group, 'status', ...(output === 'json' ? ['-o', 'json'] : []));
        const times: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now();
          await run(process.execPath, args, { maxBuffer: 256 * 1024 * 1024 });
          times.push(performance.now() - t0);
        }
        results.push({ nodes: size, program: program.name, output, medianMs: median(times) });
      }
    }
    await lease.revoke();
  }
} finally {
  client.close();
  await etcd.stop();
}
if (values.json) {
  process.stdout.write(`${JSON.stringify({ holders, runs, results })}\n`);
} else {
  process.stdout.write(
    `sluicectl status benchmark: ${holders} holders, the rest waiting, median of ${runs} runs, Node's start included\n`,
  );
  for (const r of results) {
    const label = `${r.nodes} nodes, ${r.program}, ${r.output}`;
    process.stdout.write(`  ${label.padEnd(30)} ${r.medianMs.toFixed(0)} ms\n`);
  }
}
