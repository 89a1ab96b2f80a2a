import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// Test files run side by side, one per core (at most 4, to bound memory), each with one gemm thread: on the 2-core
// CI machine one file at a time with two gemm threads left a core idle through everything that is not a gemm.
// DIFFPURE_CPU_THREADS set by the caller wins.
const forks = Math.max(1, Math.min(4, availableParallelism()));

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup/fast-check-seed.ts'],
    globalSetup: ['test/setup/build-dist.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: forks, minForks: 1 } },
    env: { DIFFPURE_CPU_THREADS: process.env.DIFFPURE_CPU_THREADS ?? '1' },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results.json' },
  },
});
