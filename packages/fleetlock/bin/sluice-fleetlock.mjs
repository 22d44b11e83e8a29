#!/usr/bin/env node
// `sluice-fleetlock` as npm links it (node_modules/.bin, `npx sluice-fleetlock`): runs the built ../dist/main.js.
// npm links a bin only if its file exists at install time, which is before the build, so the
// link points at this file rather than at dist/main.js.
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/main.js', import.meta.url);
try {
  await import(main.href);
} catch (error) {
  if (
    error?.code === 'ERR_MODULE_NOT_FOUND' &&
    String(error.message).includes(fileURLToPath(main))
  ) {
    process.stderr.write(
      'sluice-fleetlock: the program is not built yet: run `npm run build` first\n',
    );
    process.exit(2);
  }
  throw error;
}
