#!/usr/bin/env node
// `locksmithctl` (sluice's, backed by sluice's keys) as npm links it: runs the built
// ../dist/locksmithctl-main.js. See sluicectl.mjs beside it for why the link points here.
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/locksmithctl-main.js', import.meta.url);
try {
  await import(main.href);
} catch (error) {
  if (
    error?.code === 'ERR_MODULE_NOT_FOUND' &&
    String(error.message).includes(fileURLToPath(main))
  ) {
    process.stderr.write('locksmithctl: the program is not built yet: run `npm run build` first\n');
    process.exit(2);
  }
  throw error;
}
