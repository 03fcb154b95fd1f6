import { defineConfig } from 'vitest/config';
import { fuzzTimeout } from './test/helpers/fuzz.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // fast-check's fixed seed and run count (FUZZ_SEED / FUZZ_RUNS), for every file.
    setupFiles: ['test/setup/fast-check.ts'],
    pool: 'forks',
    // Two cores: more parallel files only fight over the CPU the pipeline tests need.
    maxWorkers: 2,
    // Longer only while fuzzing with more runs (FUZZ_RUNS over 100).
    testTimeout: fuzzTimeout(30_000),
    hookTimeout: 60_000,
  },
});
