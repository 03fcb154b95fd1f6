// Capture CPU and capacity, against a real RTSP server (GStreamer, 1280x720 25 fps H.264,
// a scrolling picture), all in one run, for two streams: x264 ultrafast 2 Mbit/s (CAVLC,
// cheap to decode) and veryfast 4 Mbit/s (CABAC, High profile: closer to an IP camera):
//
// 0. JPEG encoders side by side on decoded frames of the stream (bench/capture-encoders.ts:
//    FFmpeg mjpeg after swscale, from the planes with each range conversion and Huffman
//    mode, libjpeg-turbo via sharp). Per stage of the reader: bench/capture-profile.ts.
// 1. CPU per camera: `detektr capture --fps 10` (JPEG q80; also with --jpeg-width 640, with a
//    640x360 sub-stream as --detect-url, and 8 cameras in one process) vs a bare node-av
//    decode of the same stream, each a separate process measured over the same window
//    (/proc/<pid>/stat), alternated over --rounds; medians.
// 2. Capacity: cameras one `detektr capture` process sustains with zero drops (every camera
//    publishing its 10 fps, no dropped frame of any reason, no reconnect), 1, 2, 4, ... until
//    one fails.
//
//   npm run bench capture
//   npx tsx bench/capture.bench.ts --seconds 10 --rounds 2 --cameras 1,2,4,6,8,10,12 --streams veryfast:4096
//   npx tsx bench/capture.bench.ts --only encoders|cpu|capacity
//   npx tsx bench/capture.bench.ts --only cpu --baseline ../main-checkout --rows decode,capture-many,capture-many-base
//
// Needs Redis ($REDIS_URL, default redis://127.0.0.1:6379) and the GStreamer RTSP server
// packages (see scripts/rtsp-server.py). Runs the built capture command (dist/), rebuilt
// when older than src/capture.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, startRtspServer } from '../test/helpers/rtsp-server.js';
import { printTable } from './lib/table.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: process.env.BENCH_CAPTURE_SECONDS ?? '10' },
    warmup: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '2' },
    fps: { type: 'string', default: '10' },
    cameras: { type: 'string', default: '1,2,4,6,8,10,12,16' },
    size: { type: 'string', default: '1280x720' },
    // x264 preset:kbit/s of the test camera; capacity runs on the last one.
    streams: { type: 'string', default: 'ultrafast:2048,veryfast:4096' },
    // encoders, cpu, capacity, or all of them
    only: { type: 'string', default: '' },
    // cameras in the "many cameras in one process" row of the CPU table
    many: { type: 'string', default: '8' },
    // more `detektr capture` flags for the capacity steps, e.g. "--jpeg-width 640"
    // a checkout of the code to compare with (built: dist/, node_modules/), e.g. a worktree
    // of main: its reader and its 8-camera capture become rows of the same CPU table
    baseline: { type: 'string', default: '' },
    // only these rows of the CPU table (keys: decode,decode-hl,decode-sub,reader-swscale,reader,
    // reader-optimal,reader-base,capture,capture-640,capture-sub,capture-many,capture-many-base,capture-many-640)
    rows: { type: 'string', default: '' },
    'capacity-flags': { type: 'string', default: '' },
  },
});
const SECONDS = Number(values.seconds);
const WARMUP = Number(values.warmup);
const ROUNDS = Number(values.rounds);
const FPS = Number(values.fps);
const COUNTS = values.cameras!.split(',').map(Number);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const root = fileURLToPath(new URL('..', import.meta.url));
// `detektr capture` exactly as bin/detektr runs it (dist/commands/capture.js through the
// worker host), loading only the capture command: the bench does not depend on the others.
const runCapture = (dir: string) => `
  const { captureCommand } = await import(${JSON.stringify(`${dir}dist/commands/capture.js`)});
  await captureCommand().parseAsync(process.argv.slice(1), { from: 'user' });
  process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);`;
const BASELINE = values.baseline ? `${values.baseline.replace(/\/$/, '')}/` : '';
const ENCODERS = `${root}bench/capture-encoders.ts`;
const MANY = Number(values.many);
const SUB_SIZE = '640x360';

function ensureBuilt(): void {
  const newest = (dir: string, ext: string) =>
    Math.max(
      0,
      ...readdirSync(dir)
        .filter((f) => f.endsWith(ext))
        .map((f) => statSync(`${dir}/${f}`).mtimeMs),
    );
  let built = 0;
  try {
    built = Math.min(
      statSync(`${root}dist/src/capture/camera-worker.js`).mtimeMs,
      statSync(`${root}dist/src/capture/capture-service.js`).mtimeMs,
    );
  } catch {
    // not built
  }
  if (built > Math.max(newest(`${root}src/capture`, '.ts'), newest(`${root}commands`, '.ts'))) return;
  process.stdout.write('building dist/ (npx tsc -p tsconfig.build.json)...\n');
  spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'ignore' });
  statSync(`${root}dist/src/capture/camera-worker.js`);
}

/** CPU time (user + system, ms) of a process and all its threads. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10; // USER_HZ 100
}

function redisPid(): number | undefined {
  const r = spawnSync('redis-cli', ['-u', REDIS_URL, 'info', 'server'], { encoding: 'utf8' });
  const m = /process_id:(\d+)/.exec(r.stdout ?? '');
  return m ? Number(m[1]) : undefined;
}

const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** Busy and total jiffies of the whole machine (/proc/stat), to see what else was running. */
function machine(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - (f[4] ?? 0), total };
}

/**
 * Percent of one core used by each pid over `seconds` (after the warm-up already waited),
 * and the whole machine's busy share (100 % = every core).
 */
async function window(pids: number[], seconds: number): Promise<{ cpu: number[]; elapsed: number; machineBusy: number }> {
  const c0 = pids.map(cpuMs);
  const m0 = machine();
  const t0 = performance.now();
  await sleep(seconds);
  const elapsed = (performance.now() - t0) / 1000;
  const m1 = machine();
  return {
    cpu: pids.map((pid, i) => (cpuMs(pid) - c0[i]) / 10 / elapsed),
    elapsed,
    machineBusy: (100 * (m1.busy - m0.busy)) / (m1.total - m0.total),
  };
}

async function child(mode: string, url: string, seconds: number, extra: string[] = [], dir = root): Promise<number> {
  const p = spawn(process.execPath, ['--import', 'tsx', `${dir}bench/lib/decode-child.ts`, mode, url, String(FPS), ...extra], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  try {
    await sleep(WARMUP);
    if (p.exitCode !== null) throw new Error(`${mode} child exited (${p.exitCode})`);
    const w = await window([p.pid!], seconds);
    busy.push(w.machineBusy);
    return w.cpu[0];
  } finally {
    await stop(p);
  }
}

type Scrape = Map<string, number>;

async function scrape(port: number): Promise<Scrape> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Scrape = new Map();
  for (const line of text.split('\n')) {
    const m =
      /^(detektr_(?:frames_published_total|capture_dropped_total|capture_reconnects_total|capture_errors_total|capture_lag_seconds))\{([^}]*)\} (\S+)$/.exec(
        line,
      );
    if (!m) continue;
    const cam = /camera="([^"]+)"/.exec(m[2])?.[1] ?? '';
    const key = `${m[1]}|${cam}`;
    out.set(key, (out.get(key) ?? 0) + Number(m[3]));
    const reason = /reason="([^"]+)"/.exec(m[2])?.[1];
    if (reason) out.set(`${m[1]}:${reason}|${cam}`, (out.get(`${m[1]}:${reason}|${cam}`) ?? 0) + Number(m[3]));
  }
  return out;
}

function dropReasons(s: Scrape): string {
  const by = new Map<string, number>();
  for (const [k, v] of s) {
    const m = /^detektr_capture_dropped_total:([^|]+)\|/.exec(k);
    if (m) by.set(m[1], (by.get(m[1]) ?? 0) + v);
  }
  return Array.from(by, ([r, n]) => `${r}=${n}`).join(' ');
}

const sum = (s: Scrape, metric: string, cam?: string) =>
  [...s].filter(([k]) => k.startsWith(`${metric}|`) && (!cam || k === `${metric}|${cam}`)).reduce((a, [, v]) => a + v, 0);

/** Machine busy % of every measurement window, for the report. */
const busy: number[] = [];

interface CaptureRun {
  cpu: number;
  server: number;
  machineBusy: number;
  redisCpu?: number;
  published: number[];
  expected: number;
  dropped: number;
  /** e.g. corrupt=2 backlog=1 */
  why: string;
  /** worst camera's lag behind its own clock at the end, s */
  lag: number;
  reconnects: number;
}

/** `detektr capture` with `cameras` cameras on `url`; `detect`: every camera's sub-stream. */
async function capture(
  url: string,
  cameras: number,
  seconds: number,
  serverPid: number,
  o: { extra?: string[]; detect?: string; dir?: string } = {},
): Promise<CaptureRun> {
  const port = await freePort();
  const prefix = `bench:capture:${process.pid}:${cameras}:${Math.random().toString(36).slice(2, 7)}:`;
  const ids = Array.from({ length: cameras }, (_, i) => `cam${i + 1}`);
  const args = [
    ...ids.flatMap((id) => ['--camera', `${id}=${url}`]),
    ...(o.detect ? ids.flatMap((id) => ['--detect-url', `${id}=${o.detect}`]) : []),
    ...(o.extra ?? []),
    '--fps',
    String(FPS),
    '--metrics-port',
    String(port),
    '--log-level',
    'warn',
  ];
  const p = spawn(process.execPath, ['--input-type=module', '-e', runCapture(o.dir ?? root), '--', ...args], {
    cwd: o.dir ?? root,
    env: { ...process.env, REDIS_URL, DETEKTR_PREFIX: prefix, DETEKTR_STREAM_MAXLEN: '20000', DETEKTR_PAYLOAD_TTL: '20s' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  p.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const redis = new Redis(REDIS_URL);
  try {
    await sleep(WARMUP);
    if (p.exitCode !== null) throw new Error(`detektr capture exited (${p.exitCode}): ${stderr}`);
    const rpid = redisPid();
    const before = await scrape(port);
    const pids = [p.pid!, serverPid, ...(rpid ? [rpid] : [])];
    const w = await window(pids, seconds).catch((err: Error) => {
      throw new Error(`${err.message}; detektr capture: exit ${p.exitCode} signal ${p.signalCode}: ${stderr}`);
    });
    busy.push(w.machineBusy);
    const after = await scrape(port);
    return {
      cpu: w.cpu[0],
      server: w.cpu[1],
      machineBusy: w.machineBusy,
      redisCpu: rpid ? w.cpu[2] : undefined,
      published: ids.map((id) => sum(after, 'detektr_frames_published_total', id) - sum(before, 'detektr_frames_published_total', id)),
      expected: FPS * w.elapsed,
      dropped: sum(after, 'detektr_capture_dropped_total'),
      why: dropReasons(after),
      lag: Math.max(0, ...ids.map((id) => sum(after, 'detektr_capture_lag_seconds', id))),
      reconnects: sum(after, 'detektr_capture_reconnects_total') + sum(after, 'detektr_capture_errors_total'),
    };
  } finally {
    await stop(p);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
    redis.disconnect();
  }
}

ensureBuilt();
process.stdout.write(`${cpus().length} CPUs (${cpus()[0]?.model}); stream ${values.size} 25 fps H.264, scrolling SMPTE bars\n`);

interface Stream {
  preset: string;
  kbits: number;
  label: string;
}
const streams: Stream[] = values.streams!.split(',').map((s) => {
  const [preset, kbits] = s.split(':');
  return { preset, kbits: Number(kbits), label: `x264 ${preset} ${kbits} kbit/s` };
});

// 0. Encoders, on the last stream's frames.
const want = (what: string) => !values.only || values.only === what;
if (want('encoders')) {
  const stream = streams[streams.length - 1];
  const server = await startRtspServer({ size: values.size, fps: 25, speed: 4, preset: stream.preset, bitrate: stream.kbits });
  try {
    process.stdout.write(`${stream.label}:\n`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', ENCODERS, server.url], { cwd: root, stdio: ['ignore', 'inherit', 'ignore'] });
    if (r.status !== 0) throw new Error(`bench/capture-encoders.ts exited ${r.status}`);
  } finally {
    await server.close();
  }
}

// 1. CPU per camera, per stream; variants alternated so drift (other load) hits them alike.
for (const stream of want('cpu') ? streams : []) {
  const opts = { fps: 25, speed: 4, preset: stream.preset, bitrate: stream.kbits };
  const [server, sub] = await Promise.all([startRtspServer({ ...opts, size: values.size }), startRtspServer({ ...opts, size: SUB_SIZE })]);
  const url = server.url;
  busy.length = 0;
  try {
    const runs: Record<string, number[]> = {};
    const add = (k: string, v: number | undefined) => v !== undefined && (runs[k] ??= []).push(v);
    const rows = values.rows ? values.rows.split(',') : undefined;
    // Measures a row (and its redis / server side figures) only when asked for.
    const measure = async (k: string, fn: () => Promise<number>) => {
      if (!rows || rows.includes(k)) add(k, await fn());
    };
    for (let round = 0; round < ROUNDS; round++) {
      await measure('decode', () => child('decode', url, SECONDS));
      await measure('decode-hl', () => child('decode-hl', url, SECONDS));
      await measure('decode-sub', () => child('decode', sub.url, SECONDS));
      await measure('reader-swscale', () => child('reader', url, SECONDS, ['--jpeg-path', 'swscale']));
      await measure('reader', () => child('reader', url, SECONDS));
      await measure('reader-optimal', () => child('reader', url, SECONDS, ['--jpeg-huffman', 'optimal']));
      if (BASELINE) await measure('reader-base', () => child('reader', url, SECONDS, [], BASELINE));
      await measure('capture', async () => {
        const c = await capture(url, 1, SECONDS, server.proc.pid!);
        add('server', c.server);
        add('redis', c.redisCpu);
        return c.cpu;
      });
      await measure('capture-640', async () => (await capture(url, 1, SECONDS, server.proc.pid!, { extra: ['--jpeg-width', '640'] })).cpu);
      await measure('capture-sub', async () => (await capture(url, 1, SECONDS, sub.proc.pid!, { detect: sub.url })).cpu);
      await measure('capture-many', async () => {
        const c = await capture(url, MANY, SECONDS, server.proc.pid!);
        add('server', c.server);
        return c.cpu / MANY;
      });
      if (BASELINE)
        await measure('capture-many-base', async () => (await capture(url, MANY, SECONDS, server.proc.pid!, { dir: BASELINE })).cpu / MANY);
      await measure(
        'capture-many-640',
        async () => (await capture(url, MANY, SECONDS, server.proc.pid!, { extra: ['--jpeg-width', '640'] })).cpu / MANY,
      );
    }
    const bare = median(runs.decode);
    const row = (what: string, key: string) =>
      runs[key]?.length ? [{ what, 'CPU % of a core': median(runs[key]), 'x bare decode': median(runs[key]) / bare }] : [];
    printTable(
      `CPU per camera, ${stream.label}, medians of ${ROUNDS} x ${SECONDS} s (RTSP server: ${runs.server ? median(runs.server).toFixed(1) : '?'} % of a core;` +
        ` machine busy ${Math.min(...busy).toFixed(0)}-${Math.max(...busy).toFixed(0)} % of ${cpus().length} cores in the windows)`,
      [
        ...row('bare decode: node-av low-level sync, 1 thread (baseline)', 'decode'),
        ...row('bare decode: node-av Demuxer + Decoder (async, defaults)', 'decode-hl'),
        ...row(`bare decode of a ${SUB_SIZE} sub-stream (same encoder settings)`, 'decode-sub'),
        ...row(`capture reader alone, JPEG as before (swscale range + mjpeg)`, 'reader-swscale'),
        ...row(`capture reader alone: decode + ${FPS} fps checks + JPEG q80 (planes + range filter, huffman=default)`, 'reader'),
        ...row(`capture reader alone, mjpeg huffman=optimal (the tables before)`, 'reader-optimal'),
        ...row(`capture reader alone, baseline checkout (${BASELINE})`, 'reader-base'),
        ...row(`detektr capture, 1 camera, --fps ${FPS}`, 'capture'),
        ...row(`detektr capture, 1 camera, --jpeg-width 640`, 'capture-640'),
        ...row(`detektr capture, 1 camera, --detect-url ${SUB_SIZE} sub-stream`, 'capture-sub'),
        ...row(`detektr capture, ${MANY} cameras in one process, per camera`, 'capture-many'),
        ...row(`detektr capture, ${MANY} cameras, baseline checkout, per camera`, 'capture-many-base'),
        ...row(`detektr capture, ${MANY} cameras, --jpeg-width 640, per camera`, 'capture-many-640'),
        ...row('  + redis-server while 1-camera capture ran', 'redis'),
      ],
    );
  } finally {
    await Promise.all([server.close(), sub.close()]);
  }
}

// 2. Capacity, on the last stream (the camera-like one by default).
const stream = streams[streams.length - 1];
const server = !want('capacity')
  ? undefined
  : await startRtspServer({ size: values.size, fps: 25, speed: 4, preset: stream.preset, bitrate: stream.kbits });
try {
  if (!server) process.exit(0);
  const capacity: Record<string, string | number>[] = [];
  let sustained = 0;
  for (const n of COUNTS) {
    const r = await capture(server.url, n, SECONDS, server.proc.pid!, { extra: values['capacity-flags']!.split(' ').filter(Boolean) });
    const worst = Math.min(...r.published);
    // Keeping up: every frame, no drop or reconnect, and not falling behind the cameras' clocks.
    const ok = r.dropped === 0 && r.reconnects === 0 && worst >= Math.floor(r.expected * 0.97) && r.lag < 1;
    capacity.push({
      cameras: n,
      'capture CPU %': r.cpu,
      'per camera': r.cpu / n,
      'redis CPU %': r.redisCpu ?? '',
      'RTSP server CPU %': r.server,
      'machine busy %': r.machineBusy,
      'frames/s per camera (worst)': worst / (r.expected / FPS),
      'lag s (worst)': r.lag,
      dropped: r.why || 0,
      reconnects: r.reconnects,
      sustained: ok ? 'yes' : 'no',
    });
    if (!ok) break;
    sustained = n;
  }
  const flags = values['capacity-flags'] ? ` ${values['capacity-flags']}` : '';
  printTable(`Cameras one process sustains (${stream.label}, --fps ${FPS}${flags}, JPEG q80, ${SECONDS} s each): ${sustained}`, capacity);
} finally {
  await server?.close();
}
