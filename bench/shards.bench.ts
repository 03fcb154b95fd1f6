// Routed frames/s of the buffer with 1, 2 and 3 shards on a real Redis Cluster (3 masters
// on loopback, Debian's redis-server), against the same buffer on one plain redis-server,
// all in one run. Each round pre-fills the captured streams (publishFrame, as capture
// does), then times one BufferService routing every frame to a processor's ready stream
// (intake + hand-off scripts), and reads the CPU this process and each redis-server spent.
// Run: npm run bench -- shards [--frames 12000] [--rounds 2]
import { readFileSync } from 'node:fs';
import { trace } from '@opentelemetry/api';
import { BufferService } from '../src/buffer/buffer-service.js';
import { ProcessorRegistry } from '../src/buffer/registry.js';
import { publishFrame } from '../src/bus/publish-frame.js';
import { closeRedis, createBlockingRedis, createRedis, deleteKeysWithPrefix, type RedisClient } from '../src/bus/redis.js';
import { shardSetOf, type ShardSet } from '../src/bus/shards.js';
import { createLogger } from '../src/telemetry/logger.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { startPrivateRedis } from '../test/helpers/private-redis.js';
import { startRedisCluster } from '../test/helpers/redis-cluster.js';
import { printTable } from './lib/table.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  return v;
};
const FRAMES = arg('frames', 12_000);
const ROUNDS = arg('rounds', 2);
const TICK_MS = 1000 / 100; // /proc/<pid>/stat counts in clock ticks (USER_HZ = 100)

function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

interface Result {
  routedPerS: number;
  benchCpuPct: number;
  serverCpuPct: number[];
}

async function fill(redis: RedisClient, shards: ShardSet): Promise<void> {
  const deps = { redis, tracer: trace.getTracer('bench'), payloadTtlMs: 600_000, streamMaxLen: 1_000_000 };
  const jpeg = Buffer.alloc(512, 1);
  const inflight = new Set<Promise<unknown>>();
  for (let i = 0; i < FRAMES; i++) {
    const cameraId = `cam-${i % 24}`;
    const p = publishFrame({ ...deps, keys: shards.forCamera(cameraId) }, { cameraId, jpeg, width: 16, height: 16 }).finally(() =>
      inflight.delete(p),
    );
    inflight.add(p);
    if (inflight.size >= 128) await Promise.race(inflight);
  }
  await Promise.all(inflight);
}

async function route(url: string, count: number, serverPids: number[]): Promise<Result> {
  const prefix = `bench:shards:${process.pid}:${Math.random().toString(36).slice(2, 6)}:`;
  const shards = shardSetOf({ prefix, redisUrl: url, shards: count });
  const logger = createLogger({ component: 'bench', level: (process.env.BENCH_LOG as 'debug') ?? 'error' });
  const redis = createRedis({ url, name: 'bench', logger });
  const blocking = shards.all.map(() => createBlockingRedis({ url, name: 'bench', logger, blockMs: 200 }));
  try {
    await fill(redis, shards);
    await new ProcessorRegistry(redis, shards.global, 600_000).heartbeat({
      id: 'sink',
      capabilities: ['sample'],
      heartbeatMs: 600_000,
      instance: 'sink-1',
      stats: { capacity: 10 * FRAMES, concurrency: 1, at: Date.now(), inFlight: 0, completed: 0, failed: 0, consecutiveFailures: 0 },
    });
    const buffer = new BufferService({
      redis,
      blocking,
      shards,
      tracer: trace.getTracer('bench'),
      metrics: createMetrics('bench'),
      logger,
      processorTtlMs: 600_000,
      streamMaxLen: 1_000_000,
      batchSize: 500,
      blockMs: 200,
      claimIdleMs: 600_000,
      maxDeliveries: 5,
    });
    const cpu0 = process.cpuUsage();
    const server0 = serverPids.map(procCpuMs);
    const t0 = performance.now();
    const running = buffer.run();
    const ready = shards.all.map((k) => k.ready('sink'));
    for (;;) {
      const n = (await Promise.all(ready.map((s) => redis.xlen(s)))).reduce((a, b) => a + b, 0);
      if (n >= FRAMES) break;
      if (performance.now() - t0 > 300_000) throw new Error(`only ${n} of ${FRAMES} frames routed in 300 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const serverCpu = serverPids.map((pid, i) => procCpuMs(pid) - server0[i]);
    await buffer.close();
    await running;
    return {
      routedPerS: FRAMES / (ms / 1000),
      benchCpuPct: ((cpu.user + cpu.system) / 1000 / ms) * 100,
      serverCpuPct: serverCpu.map((c) => (c / ms) * 100),
    };
  } finally {
    await deleteKeysWithPrefix(redis, prefix).catch(() => undefined);
    await closeRedis(redis, ...blocking);
  }
}

const plain = await startPrivateRedis();
const cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 0 });
const masters = cluster.nodes.filter((n) => n.role === 'master').map((n) => n.pid);
try {
  const configs = [
    { name: 'one plain Redis, 1 shard', url: plain.url, shards: 1, pids: [plain.pid] },
    { name: 'cluster (3 masters), 1 shard', url: cluster.url, shards: 1, pids: masters },
    { name: 'cluster (3 masters), 2 shards', url: cluster.url, shards: 2, pids: masters },
    { name: 'cluster (3 masters), 3 shards', url: cluster.url, shards: 3, pids: masters },
  ];
  const results = new Map<string, Result[]>();
  // Rounds interleave the configurations, so a change in the machine's load hits each alike.
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of configs) results.set(c.name, [...(results.get(c.name) ?? []), await route(c.url, c.shards, c.pids)]);
  }
  const best = (name: string) => results.get(name)!.reduce((a, b) => (b.routedPerS > a.routedPerS ? b : a));
  const base = best(configs[0].name).routedPerS;
  printTable(
    `buffer routing, ${FRAMES} frames per round, best of ${ROUNDS} rounds (load average ${(await import('node:os')).loadavg()[0].toFixed(1)})`,
    configs.map((c) => {
      const r = best(c.name);
      return {
        setup: c.name,
        'routed frames/s': Math.round(r.routedPerS),
        'vs plain Redis': `${(r.routedPerS / base).toFixed(2)}x`,
        'per shard frames/s': Math.round(r.routedPerS / c.shards),
        'bench process CPU %': Math.round(r.benchCpuPct),
        'redis-server CPU % (each)': r.serverCpuPct.map((p) => Math.round(p)).join(' / '),
        // CPU per 1000 routed frames: what a machine of its own would need for each side.
        'client CPU ms/1k frames': ((r.benchCpuPct * 10) / r.routedPerS) * 1000,
        'servers CPU ms/1k frames': ((r.serverCpuPct.reduce((a, b) => a + b, 0) * 10) / r.routedPerS) * 1000,
      };
    }),
  );
  const three = best(configs[3].name);
  const clientMs = ((three.benchCpuPct * 10) / three.routedPerS) * 1000;
  const serverMs = ((three.serverCpuPct.reduce((a, b) => a + b, 0) * 10) / three.routedPerS) * 1000;
  process.stdout.write(
    `limit here: the one buffer process (${Math.round(three.benchCpuPct)} % of a core; the servers ${three.serverCpuPct.map((p) => Math.round(p)).join(' / ')} %).\n` +
      `3 machines (a master + a buffer each, 3 shards): ~${Math.round((3 * 1e6) / clientMs / 1000)}k frames/s by the client cost (${clientMs.toFixed(0)} ms CPU per 1000 frames), ` +
      `each master then at ~${Math.round(((serverMs / 3) * (3e6 / clientMs)) / 1e4)} % of a core (${serverMs.toFixed(1)} ms CPU per 1000 frames of its shard).\n`,
  );
} finally {
  await cluster.stop();
  await plain.stop();
}
