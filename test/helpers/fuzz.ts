/**
 * fast-check's settings for the whole suite, in one place (test/setup/fast-check.ts applies
 * them to every test file). `npm test` always runs the same cases: a fixed seed, so a
 * submission cannot fail for a case it did not cause. `npm run fuzz` (scripts/fuzz.ts)
 * hunts with fresh seeds through FUZZ_SEED and FUZZ_RUNS.
 */

/** The seed of `npm test`. A new one is only worth taking with the cases it finds kept as fixed tests. */
export const DEFAULT_SEED = 1101;
/** fast-check's own default run count: what a property runs that states no count of its own. */
export const DEFAULT_RUNS = 100;

function envInt(name: string, min: number, max: number): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new Error(`${name}=${JSON.stringify(raw)}: expected an integer in [${min}, ${max}]`);
  return n;
}

export const FUZZ = {
  /** fast-check takes 32-bit integer seeds (and prints negative ones, e.g. -242977261). */
  seed: envInt('FUZZ_SEED', -(2 ** 31), 2 ** 31 - 1) ?? DEFAULT_SEED,
  numRuns: envInt('FUZZ_RUNS', 1, 10_000_000) ?? DEFAULT_RUNS,
};

/**
 * The run count of a property that costs more (or less) than usual: `base` runs for every
 * DEFAULT_RUNS, so FUZZ_RUNS scales every property of the suite alike.
 */
export function fuzzRuns(base: number): number {
  return Math.max(1, Math.round((base * FUZZ.numRuns) / DEFAULT_RUNS));
}

/** A property test's timeout, grown with FUZZ_RUNS (never below `ms`). */
export function fuzzTimeout(ms: number): number {
  return Math.round(ms * Math.max(1, FUZZ.numRuns / DEFAULT_RUNS));
}

/** How to run the same cases again: printed with every failure of a property test. */
export function replayHint(): string {
  return `fast-check: FUZZ_SEED=${FUZZ.seed} FUZZ_RUNS=${FUZZ.numRuns} replays this run`;
}
