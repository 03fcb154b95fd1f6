// `npm run fuzz -- [--runs N] [--minutes M | --rounds K] [--file test/x.test.ts ...]`: runs
// every property test file (the test files that use fast-check) with fresh random seeds,
// round after round, one vitest process at a time. `npm test` runs the same properties with
// one fixed seed (test/helpers/fuzz.ts); this is where new cases are found.
//
// --runs N is FUZZ_RUNS: a property that runs 100 cases in `npm test` runs N, the cheaper
// and costlier ones in proportion (default 1000). Each file of each round gets its own seed,
// printed before it runs; a failure prints its test, fast-check's counterexample and the
// command that replays it. Put every counterexample found into the fixed-case tests.
// Exit 0 when nothing failed, 1 when something did, 2 on bad arguments.
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';

const root = new URL('..', import.meta.url).pathname;

interface Options {
  runs: number;
  rounds: number;
  deadline: number;
  files: string[];
}

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\nusage: npm run fuzz -- [--runs N] [--minutes M | --rounds K] [--file PATH ...]\n`);
  process.exit(2);
}

function positive(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || !(n > 0)) usage(`--${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

/** The test files that use fast-check. */
function propertyFiles(dir = join(root, 'test')): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...propertyFiles(path));
    else if (name.endsWith('.test.ts') && /from 'fast-check'/.test(readFileSync(path, 'utf8'))) out.push(relative(root, path));
  }
  return out;
}

function options(): Options {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        runs: { type: 'string' },
        minutes: { type: 'string' },
        rounds: { type: 'string' },
        file: { type: 'string', multiple: true },
      },
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.minutes !== undefined && values.rounds !== undefined) usage('give --minutes or --rounds, not both');
  const runs = positive('runs', values.runs, 1000);
  if (!Number.isInteger(runs)) usage('--runs must be an integer');
  const minutes = values.minutes === undefined ? undefined : positive('minutes', values.minutes, 0);
  const rounds = minutes === undefined ? positive('rounds', values.rounds, 1) : Infinity;
  const all = propertyFiles();
  const files = values.file ?? all;
  for (const f of files) if (!all.includes(f)) usage(`--file ${f}: not a test file that uses fast-check (those: ${all.join(', ')})`);
  return { runs, rounds, deadline: minutes === undefined ? Infinity : Date.now() + minutes * 60_000, files };
}

interface Failure {
  file: string;
  seed: number;
  test: string;
  message: string;
}

interface JsonReport {
  numTotalTests?: number;
  testResults?: { assertionResults?: { fullName: string; status: string; failureMessages?: string[] }[]; message?: string }[];
}

/** One vitest run of `file` with `seed`: its failures (a run that did not report at all is one). */
async function runFile(file: string, seed: number, runs: number, dir: string): Promise<{ failures: Failure[]; tests: number }> {
  const report = join(dir, 'report.json');
  rmSync(report, { force: true });
  const vitest = join(root, 'node_modules', '.bin', 'vitest');
  const child = spawn(vitest, ['run', file, '--reporter=json', `--outputFile=${report}`], {
    cwd: root,
    env: { ...process.env, FUZZ_SEED: String(seed), FUZZ_RUNS: String(runs) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  let parsed: JsonReport;
  try {
    parsed = JSON.parse(readFileSync(report, 'utf8')) as JsonReport;
  } catch {
    return { failures: [{ file, seed, test: '(vitest)', message: `exited ${code} without a report: ${stderr.trim()}` }], tests: 0 };
  }
  const failures: Failure[] = [];
  for (const r of parsed.testResults ?? []) {
    for (const a of r.assertionResults ?? []) {
      if (a.status === 'failed') failures.push({ file, seed, test: a.fullName, message: (a.failureMessages ?? []).join('\n') });
    }
    if (r.message) failures.push({ file, seed, test: '(file)', message: r.message });
  }
  if (code !== 0 && failures.length === 0) failures.push({ file, seed, test: '(vitest)', message: `exited ${code}: ${stderr.trim()}` });
  return { failures, tests: parsed.numTotalTests ?? 0 };
}

/** The lines of a failure worth reading: the error, fast-check's seed, path and counterexample. */
function summary(message: string): string {
  const lines = message.split('\n').filter((l) => !/^\s+at /.test(l));
  return lines.slice(0, 14).join('\n    ');
}

async function main(): Promise<void> {
  const o = options();
  const dir = mkdtempSync(join(tmpdir(), 'detektr-fuzz-'));
  const failures: Failure[] = [];
  let seeds = 0;
  let round = 0;
  const started = Date.now();
  console.log(
    `fuzz: ${o.files.length} property test files, FUZZ_RUNS=${o.runs}, ${Number.isFinite(o.rounds) ? `${o.rounds} round(s)` : 'until the deadline'}`,
  );
  try {
    while (round < o.rounds && Date.now() < o.deadline) {
      round++;
      for (const file of o.files) {
        if (Date.now() >= o.deadline) break;
        const seed = randomInt(-(2 ** 31), 2 ** 31);
        const t0 = Date.now();
        const { failures: found, tests } = await runFile(file, seed, o.runs, dir);
        seeds++;
        const secs = ((Date.now() - t0) / 1000).toFixed(1);
        console.log(`round ${round} seed ${seed} ${file}: ${found.length ? `FAILED (${found.length})` : 'ok'} (${tests} tests, ${secs} s)`);
        for (const f of found) console.log(`  ${f.test}\n    ${summary(f.message)}`);
        failures.push(...found);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  console.log(`\nfuzz: ${seeds} seeds in ${round} round(s), ${minutes} min, FUZZ_RUNS=${o.runs}: ${failures.length} failure(s)`);
  for (const f of failures) console.log(`  FUZZ_SEED=${f.seed} FUZZ_RUNS=${o.runs} npx vitest run ${f.file}   # ${f.test}`);
  process.exitCode = failures.length ? 1 : 0;
}

await main();
