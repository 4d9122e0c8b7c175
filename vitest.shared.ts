import { defineConfig } from 'vitest/config';

/**
 * The test setup of packages whose tests start real processes: one test file at a time (two at
 * once would oversubscribe two cores), in forked workers, with room for multi-process jobs.
 */
export const processTests = defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
