/**
 * One worker of a `SplitFleet`: runs its shard of the fleet as an `InProcessFleet` and answers
 * the parent over Node's IPC channel (see `split-fleet.ts` for the messages). Started by the
 * parent only; it stops its agents and exits when told to or when the parent goes away.
 */
import { InProcessFleet } from './in-process.js';
import { Random } from './random.js';
import { type FromWorker, type ToWorker, WORKER_SPEC_ENV, type WorkerSpec } from './split-fleet.js';

const send = (message: FromWorker) => process.send?.(message);
const spec = JSON.parse(process.env[WORKER_SPEC_ENV] ?? 'null') as WorkerSpec | null;
if (!spec || !process.send) {
  process.stderr.write(`split-worker: started without ${WORKER_SPEC_ENV} and an IPC channel\n`);
  process.exit(2);
}
const { endpoints, ...options } = spec;

let fleet: InProcessFleet | null = null;
let progress: NodeJS.Timeout | null = null;
async function stop(code: number): Promise<never> {
  if (progress) clearInterval(progress);
  await fleet?.stop().catch(() => {});
  process.exit(code);
}
process.on('disconnect', () => void stop(0));

try {
  fleet = await InProcessFleet.start({ ...options, etcd: { endpoints } });
} catch (error) {
  send({ type: 'error', message: `start: ${String(error)}` });
  await stop(1);
}
const shard = fleet!;
send({ type: 'ready' });

process.on('message', (message: ToWorker) => {
  if (message.type === 'stage') {
    void shard.stageAll(message.version, {
      spreadMs: message.spreadMs,
      random: new Random(message.seed),
    });
    const version = message.version;
    progress ??= setInterval(() => {
      send({
        type: 'progress',
        reboots: shard.reboots.length,
        done: shard.rolloutDone(version),
        states: shard.states(),
        problems: [...shard.problems],
      });
    }, 1000);
  } else if (message.type === 'report') {
    void shard.slotChecks().then(() => {
      const cpu = process.cpuUsage();
      send({
        type: 'report',
        reboots: shard.reboots,
        stages: shard.stages,
        transitions: shard.transitions,
        problems: [...shard.problems],
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        rssMiB: process.memoryUsage().rss / 2 ** 20,
      });
    });
  } else if (message.type === 'stop') {
    void stop(0);
  }
});
