import { defineConfig } from 'vitest/config';
import { alias } from './vitest.config.js';

// The slow tests (`*.slow.test.ts`), left out of `npm test`: `npm run test:slow`. Workspace
// packages resolve from source, as in vitest.config.ts.
export default defineConfig({
  resolve: { alias },
  test: {
    name: 'slow',
    include: ['test/**/*.slow.test.ts'],
    maxWorkers: 2,
    testTimeout: 600_000,
    hookTimeout: 60_000,
  },
});
