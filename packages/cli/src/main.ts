#!/usr/bin/env node
/**
 * The `sluicectl` executable: runs `run()` with the process's arguments and exits with its code
 * (see `runMain` for signals, closed pipes and questions on the terminal).
 */
import { runMain } from './process-io.js';
import { run } from './program.js';

await runMain(run);
