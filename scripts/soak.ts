// `npm run soak -- --minutes N [--fps 30] [--out soak.csv] [--warmup M]`: runs the pipeline
// as separate worker processes (capture with a synthetic camera, buffer, sample + motion
// processors, store) against REDIS_URL / DATABASE_URL for N minutes, and every 10 s samples
// each worker's RSS and heap, Redis memory and the groups' lag into a CSV; prints a summary
// of each series after the warm-up (default a third of the run).
//
// Redis memory is measured twice: the server's used_memory, and the bytes of this run's own
// keys (SCAN of its prefix + MEMORY USAGE), which other users of a shared Redis do not
// disturb. Memory levels off once every stream holds DETEKTR_STREAM_MAXLEN entries and the
// payloads of DETEKTR_PAYLOAD_TTL are in Redis: the soak defaults them to 20000 and 60s
// (the product's 100000 and 5m would take ~55 min to fill the captured stream at 30 fps).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { groupLag } from '../src/bus/group-lag.js';
import { redisKeys } from '../src/bus/keys.js';
import { deleteKeysWithPrefix } from '../src/bus/redis.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    fps: { type: 'string', default: '30' },
    out: { type: 'string', default: 'soak.csv' },
    every: { type: 'string', default: '10' },
    warmup: { type: 'string' },
  },
});
const minutes = Number(values.minutes);
const everyS = Number(values.every);
const warmupMin = values.warmup === undefined ? minutes / 3 : Number(values.warmup);
if (!(minutes > 0 && minutes <= 24 * 60) || !(everyS >= 1) || !(warmupMin >= 0 && warmupMin < minutes)) {
  throw new Error('--minutes must be in (0, 1440], --every >= 1, --warmup in [0, minutes)');
}
const prefix = `soak:${Date.now().toString(36)}:`;
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const env = {
  DETEKTR_STREAM_MAXLEN: '20000',
  DETEKTR_PAYLOAD_TTL: '60s',
  ...process.env,
  REDIS_URL: redisUrl,
  DETEKTR_PREFIX: prefix,
  DETEKTR_LOG_LEVEL: 'warn',
  DETEKTR_DB_SCHEMA: process.env.DETEKTR_DB_SCHEMA ?? 'soak',
};
const bin = new URL('../bin/detektr', import.meta.url).pathname;

function start(name: string, args: string[], port: number): { name: string; proc: ChildProcess; port: number } {
  const proc = spawn(process.execPath, [bin, ...args, '--metrics-port', String(port)], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  return { name, proc, port };
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function heapUsed(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  const m = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Bytes of every key under the prefix (MEMORY USAGE samples big streams: an estimate). */
async function prefixBytes(redis: Redis): Promise<number> {
  let cursor = '0';
  let bytes = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    const p = redis.pipeline();
    for (const k of keys) p.memory('USAGE', k);
    for (const [, v] of (await p.exec()) ?? []) bytes += Number(v ?? 0);
  } while (cursor !== '0');
  return bytes;
}

async function main(): Promise<void> {
  const migrate = spawn(process.execPath, [bin, 'migrate'], { env, stdio: 'inherit' });
  await new Promise((r) => migrate.on('exit', r));
  const workers = [
    start('store', ['store'], 19904),
    start('buffer', ['buffer'], 19902),
    start('sample', ['process', '--processor', 'sample'], 19903),
    start('motion', ['process', '--processor', 'motion'], 19905),
    start('capture', ['capture', '--camera', `soak=lavfi:testsrc2=size=640x360:rate=${values.fps}`, '--fps', String(values.fps)], 19901),
  ];
  const redis = new Redis(redisUrl);
  const keys = redisKeys(prefix);
  const rows: string[] = [];
  const header = [
    't_s',
    'redis_used_bytes',
    'redis_run_keys_bytes',
    ...workers.flatMap((w) => [`${w.name}_rss`, `${w.name}_heap`]),
    'captured_lag',
    'events_lag',
    'ready_lag',
    'frames_captured_stream_len',
  ];
  rows.push(header.join(','));
  const t0 = Date.now();
  const end = t0 + minutes * 60_000;
  let stop = false;
  process.on('SIGINT', () => (stop = true));
  while (Date.now() < end && !stop) {
    await new Promise((r) => setTimeout(r, everyS * 1000));
    const mem = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);
    const perWorker = await Promise.all(workers.map(async (w) => [rssBytes(w.proc.pid!), await heapUsed(w.port).catch(() => NaN)]));
    const lag = async (s: string) => (await groupLag(redis, s)).reduce((n, g) => n + (g.lag ?? 0) + g.pending, 0);
    const readyLag = (await lag(keys.ready('sample'))) + (await lag(keys.ready('motion')));
    const row = [
      Math.round((Date.now() - t0) / 1000),
      mem,
      await prefixBytes(redis),
      ...perWorker.flat(),
      await lag(keys.captured),
      await lag(keys.events),
      readyLag,
      await redis.xlen(keys.captured),
    ];
    rows.push(row.join(','));
    writeFileSync(String(values.out), rows.join('\n') + '\n');
    process.stderr.write(
      `${row[0]} s  redis ${(mem / 1048576).toFixed(1)} MiB (this run ${(Number(row[2]) / 1048576).toFixed(1)})  ${workers.map((w, i) => `${w.name} ${(perWorker[i][0] / 1048576).toFixed(0)} MiB`).join('  ')}  lag ${row.slice(-4, -1).join('/')}\n`,
    );
  }
  for (const w of workers) w.proc.kill('SIGTERM');
  await Promise.all(workers.map((w) => new Promise((r) => (w.proc.exitCode !== null ? r(null) : w.proc.on('exit', r)))));
  // Summary: after the warm-up, each series' spread around its mean.
  const data = rows.slice(1).map((r) => r.split(',').map(Number));
  const warm = data.filter((r) => r[0] >= warmupMin * 60);
  process.stdout.write(
    `soak: ${minutes} min at ${values.fps} fps, ${data.length} samples (${warm.length} after a ${warmupMin.toFixed(1)} min warm-up), CSV in ${values.out}\n`,
  );
  header.forEach((h, i) => {
    if (i === 0 || !warm.length) return;
    const v = warm.map((r) => r[i]).filter(Number.isFinite);
    if (!v.length) return;
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const spread = mean ? (100 * (Math.max(...v) - Math.min(...v))) / 2 / mean : 0;
    process.stdout.write(
      `${h.padEnd(28)} mean ${mean.toFixed(0).padStart(12)}  min ${Math.min(...v)}  max ${Math.max(...v)}  +/-${spread.toFixed(1)}%\n`,
    );
  });
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
}

await main();
