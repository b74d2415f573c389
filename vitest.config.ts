import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The package names resolve to their TypeScript sources (as tsconfig.json's `paths` do for tsc, tsx and
// esbuild), so tests never need a built dist/; the packages' `exports` name dist/ for installed copies.
const resolve = {
  alias: [
    {
      find: /^@tmem\/(protocol|memnode|client)$/,
      replacement: fileURLToPath(new URL('./packages/$1/src/index.ts', import.meta.url)),
    },
  ],
};

export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      {
        resolve,
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.test.ts'],
          pool: 'forks',
          testTimeout: 60_000,
        },
      },
      {
        resolve,
        // Real node processes with sub-second leases: one file at a time, so a loaded two-core machine does
        // not starve heartbeats and turn timing into flakiness.
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
