/**
 * sluicectl as a library: `run(argv, io)` runs the CLI without touching the process, for tests
 * and embedding; `runLocksmithctl(argv, io)` is locksmithctl on sluice's keys. The executables
 * are `main.ts` and `locksmithctl-main.ts`.
 */
export { type CliIO, EXIT, exitCodeFor } from './context.js';
export { addEtcdOptions, type EtcdFlags, etcdSettingsFrom } from './etcd-options.js';
export { runLocksmithctl } from './locksmithctl.js';
export { buildProgram, run } from './program.js';
