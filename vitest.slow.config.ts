import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('.', import.meta.url));

// The slow tests (`*.slow.test.ts`), left out of `npm test`: `npm run test:slow`.
const alias = [
  { find: /^@sluice\/([a-z-]+)$/, replacement: `${root}packages/$1/src/index.ts` },
  { find: /^@sluice\/([a-z-]+)\/([a-z-]+)$/, replacement: `${root}packages/$1/src/$2.ts` },
];

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
