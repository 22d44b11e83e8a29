/**
 * sluicectl as a library: `run(argv, io)` runs the CLI without touching the process, for tests
 * and embedding. The executable is `main.ts`.
 */
export { type CliIO, EXIT, exitCodeFor } from './context.js';
export { buildProgram, run } from './program.js';
