// `detektr trace find` against a large store: the journey query (p50/p95/p99 over random
// frames) and the whole command including process start, plus the list queries.
//
//   npm run bench trace-find                                  # 200k frames (generated once, then reused)
//   npx tsx bench/trace-find.bench.ts --frames 10000000       # the documented run (~45 min to generate, ~21 GB)
//
// The data set comes from scripts/gen-dataset.ts into schema bench_trace_<frames> of
// $BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/detektr_bench) and is
// kept for the next run (--fresh regenerates it, --drop removes it afterwards).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createPool } from '../src/store/pg.js';
import { findJourney } from '../src/trace/journey.js';
import { findFailures, findSlowFrames, searchFrames } from '../src/trace/queries.js';
import { datasetFrameId, existingDataset, generateDataset, type DatasetInfo } from '../scripts/gen-dataset.js';
import { percentile, printTable } from './lib/table.js';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: process.env.BENCH_TRACE_FRAMES ?? '200000' },
    days: { type: 'string', default: '30' },
    queries: { type: 'string', default: '1000' },
    runs: { type: 'string', default: '30' },
    fresh: { type: 'boolean', default: false },
    drop: { type: 'boolean', default: false },
  },
});
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/detektr_bench';
const frames = Number(values.frames);
const schema = `bench_trace_${frames}`;
const root = fileURLToPath(new URL('..', import.meta.url));

let info: DatasetInfo | undefined = values.fresh ? undefined : await existingDataset(DATABASE_URL, schema, frames);
if (info) {
  process.stdout.write(`data set: reusing ${schema} (${frames.toLocaleString('en-US')} frames, generated in ${info.seconds} s)\n`);
} else {
  process.stdout.write(`data set: generating ${frames.toLocaleString('en-US')} frames over ${values.days} days into ${schema} ...\n`);
  info = await generateDataset({ databaseUrl: DATABASE_URL, schema, frames, days: Number(values.days), cameras: 8 });
}
const gb = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GB`;
printTable('data set', [
  {
    frames: info.frames,
    events: info.events,
    days: info.days,
    cameras: info.cameras,
    'span (UTC)': `${new Date(info.startMs).toISOString().slice(0, 16)} .. ${new Date(info.endMs).toISOString().slice(0, 16)}`,
    'size on disk': gb(info.bytes),
    'generated in s': info.seconds,
  },
]);

let seed = 12345;
const rnd = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
};
const randomFrame = () => datasetFrameId(info!, Math.floor(rnd() * info!.frames));
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1] };
};

// 1. The query: findJourney (frame, events, stages, camera events around it), one pool connection.
const pool = createPool(DATABASE_URL, { schema, max: 1 });
const n = Number(values.queries);
const times: number[] = [];
await findJourney(pool, randomFrame()); // connect
for (let i = 0; i < n; i++) {
  const id = randomFrame();
  const t = performance.now();
  const j = await findJourney(pool, id);
  times.push(performance.now() - t);
  if (!j) throw new Error(`frame ${id} of the data set not found: the data set and datasetFrameId() disagree`);
}
const q = stats(times);

// 2. The whole command: node bin/detektr trace find <id> --json, process start to exit.
const dist = join(root, 'dist/commands/index.js');
const newest = (dir: string): number =>
  Math.max(
    0,
    ...readdirSync(dir, { withFileTypes: true }).map((e) =>
      e.isDirectory() ? newest(join(dir, e.name)) : e.name.endsWith('.ts') ? statSync(join(dir, e.name)).mtimeMs : 0,
    ),
  );
if (!existsSync(dist) || statSync(dist).mtimeMs < Math.max(newest(join(root, 'src')), newest(join(root, 'commands')))) {
  process.stdout.write('dist/ is older than the sources: npm run build ...\n');
  spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
}
const env = { ...process.env, DATABASE_URL, DETEKTR_DB_SCHEMA: schema, DETEKTR_LOG_LEVEL: 'error' };
const run = (args: string[], nodeArgs: string[] = [join(root, 'bin/detektr')]) =>
  new Promise<number>((resolve, reject) => {
    const t = performance.now();
    const p = spawn(process.execPath, [...nodeArgs, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) =>
      code === 0 ? resolve(performance.now() - t) : reject(new Error(`detektr ${args.join(' ')} exited ${code}: ${err}`)),
    );
  });
// For comparison: the same command with only its own module loaded (what loading
// subcommands lazily in commands/index.ts would give).
const traceOnly = [
  '--input-type=module',
  '-e',
  `const { traceCommand } = await import(${JSON.stringify(join(root, 'dist/commands/trace.js'))});
   await traceCommand().parseAsync(process.argv.slice(1), { from: 'user' }); process.exit(0);`,
];
const runs = Number(values.runs);
const cmd: number[] = [];
const version: number[] = [];
const lean: number[] = [];
for (let i = 0; i < runs; i++) {
  cmd.push(await run(['trace', 'find', randomFrame(), '--json']));
  version.push(await run(['--version']));
  lean.push(await run(['find', randomFrame(), '--json'], traceOnly));
}
const c = stats(cmd);
const v = stats(version);
const l = stats(lean);
const r2 = (x: number) => Math.round(x * 100) / 100;
printTable(`trace find on ${frames.toLocaleString('en-US')} frames: ${n} random frames (query), ${runs} runs (command)`, [
  { what: 'query: findJourney (1 round trip)', p50_ms: r2(q.p50), p95_ms: r2(q.p95), p99_ms: r2(q.p99), max_ms: r2(q.max) },
  { what: 'command: detektr trace find <id> --json', p50_ms: r2(c.p50), p95_ms: r2(c.p95), p99_ms: r2(c.p99), max_ms: r2(c.max) },
  { what: '  of which start-up: detektr --version', p50_ms: r2(v.p50), p95_ms: r2(v.p95), p99_ms: r2(v.p99), max_ms: r2(v.max) },
  { what: 'command, trace module only (lazy loading)', p50_ms: r2(l.p50), p95_ms: r2(l.p95), p99_ms: r2(l.p99), max_ms: r2(l.max) },
]);
process.stdout.write(`target query p95 < 50 ms: ${q.p95 < 50 ? 'met' : 'NOT met'} (${r2(q.p95)} ms)\n`);

// 3. The list queries, over windows at the end of the data set (5 runs each, median).
const end = info.endMs;
const H = 3_600_000;
const lists: Array<[string, () => Promise<unknown>]> = [
  ['trace slow --threshold 50ms --since 1h', () => findSlowFrames(pool, { sinceMs: end - H, untilMs: end, thresholdMs: 50 })],
  [
    'trace slow --threshold 50ms --since 24h --camera cam03',
    () => findSlowFrames(pool, { sinceMs: end - 24 * H, untilMs: end, thresholdMs: 50, cameraId: 'cam03' }),
  ],
  ['trace failures --since 24h', () => findFailures(pool, { sinceMs: end - 24 * H, untilMs: end })],
  ['trace failures --since 7d', () => findFailures(pool, { sinceMs: end - 168 * H, untilMs: end })],
  ['trace search --state failed --since 2h', () => searchFrames(pool, { sinceMs: end - 2 * H, untilMs: end, state: 'failed', limit: 50 })],
  [
    'trace search --camera cam03 --state failed --since 24h',
    () => searchFrames(pool, { sinceMs: end - 24 * H, untilMs: end, state: 'failed', cameraId: 'cam03', limit: 50 }),
  ],
  [
    'trace search --camera cam03 --since 2h --limit 50',
    () => searchFrames(pool, { sinceMs: end - 2 * H, untilMs: end, cameraId: 'cam03', limit: 50 }),
  ],
];
const rows: Record<string, string | number>[] = [];
for (const [what, fn] of lists) {
  const ts: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    await fn();
    ts.push(performance.now() - t);
  }
  rows.push({ query: what, median_ms: r2(stats(ts).p50), max_ms: r2(stats(ts).max) });
}
printTable("list queries (windows end at the data set's end)", rows);
await pool.end();

if (values.drop) {
  const admin = createPool(DATABASE_URL, { max: 1 });
  await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
  await admin.end();
}
