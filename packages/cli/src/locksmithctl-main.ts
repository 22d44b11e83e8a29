#!/usr/bin/env node
/**
 * The `locksmithctl` executable, backed by sluice: locksmithctl's commands and flags on sluice's
 * keys (see `runLocksmithctl`).
 */
import { runLocksmithctl } from './locksmithctl.js';
import { runMain } from './process-io.js';

await runMain(runLocksmithctl);
