import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // fast-check's fixed seed and run count (FUZZ_SEED / FUZZ_RUNS), for every file.
    setupFiles: ['test/setup/fast-check.ts'],
    pool: 'forks',
    // Two cores: more parallel files only fight over the CPU the pipeline tests need.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
