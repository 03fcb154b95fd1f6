import { Cluster } from 'ioredis';
import type { RedisClient } from '../bus/redis.js';
import { clusterState, redisNodes, type RedisNodeInfo } from '../bus/cluster-nodes.js';
import type pg from 'pg';
import { ProcessorRegistry } from '../buffer/registry.js';
import { groupLag, type GroupLag } from '../bus/group-lag.js';
import type { ShardSet } from '../bus/shards.js';

export interface CameraRow {
  cameraId: string;
  /** Frames stored in the last 10 s, per second. */
  fps: number;
  lastFrameAgeMs: number;
}

export interface ProcessorRow {
  id: string;
  capabilities: string[];
  capacity: number;
  heartbeatAgeMs: number;
  live: boolean;
  /** Frames waiting or in hand at this processor (its stream's lag + pending). */
  queued: number;
}

export interface StatusSnapshot {
  at: string;
  cameras: CameraRow[];
  /** Every group of every shard's streams (shard keys carry their tag, e.g. `detektr:{s1}:frames:captured`). */
  queues: GroupLag[];
  /** Per shard: frames waiting for the buffer (captured lag + pending) and dead-lettered entries. */
  shards: { shard: number; captured: number; deadLetter: number }[];
  processors: ProcessorRow[];
  deadLetter: number;
  /** frame.dropped in the last 5 minutes, by reason. */
  recentDrops: Record<string, number>;
  errors: string[];
  /** Redis Cluster only: cluster_state and every node (role, slots, status). */
  cluster?: { state: string; nodes: RedisNodeInfo[] };
}

/** One look at the pipeline from Redis and PostgreSQL, for `detektr status`. */
export async function statusSnapshot(o: {
  redis: RedisClient;
  pool: pg.Pool;
  shards: ShardSet;
  processorTtlMs: number;
}): Promise<StatusSnapshot> {
  const errors: string[] = [];
  const now = Date.now();
  const safe = async <T>(what: string, fn: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      errors.push(`${what}: ${(err as Error).message}`);
      return fallback;
    }
  };
  const { global } = o.shards;
  const registry = new ProcessorRegistry(o.redis, global, o.processorTtlMs);
  const [scores, live] = await Promise.all([
    safe('registry', () => o.redis.zrange(global.processors, '0', '-1', 'WITHSCORES'), [] as string[]),
    safe('registry', () => registry.live(now), []),
  ]);
  const heartbeats = new Map<string, number>();
  for (let i = 0; i < scores.length; i += 2)
    if (now - Number(scores[i + 1]) < 10 * o.processorTtlMs) heartbeats.set(scores[i], Number(scores[i + 1]));
  const ids = [...heartbeats.keys()];
  const streams = o.shards.all.flatMap((k) => [k.captured, ...ids.map((id) => k.ready(id)), k.events]);
  const queues = (await Promise.all(streams.map((s) => safe(`stream ${s}`, () => groupLag(o.redis, s), [])))).flat();
  const processors: ProcessorRow[] = ids.map((id) => {
    const info = live.find((p) => p.id === id);
    const mine = new Set(o.shards.all.map((k) => k.ready(id)));
    const q = queues.filter((g) => mine.has(g.stream));
    return {
      id,
      capabilities: info?.capabilities ?? [],
      capacity: info?.capacity ?? 0,
      live: Boolean(info),
      heartbeatAgeMs: now - heartbeats.get(id)!,
      queued: q.reduce((n, g) => n + (g.lag ?? 0) + g.pending, 0),
    };
  });
  const shards = await Promise.all(
    o.shards.all.map(async (k) => ({
      shard: k.shard,
      captured: queues.filter((g) => g.stream === k.captured).reduce((n, g) => n + (g.lag ?? 0) + g.pending, 0),
      deadLetter: await safe(`dead-letter ${k.deadLetter}`, () => o.redis.xlen(k.deadLetter), 0),
    })),
  );
  const deadLetter = shards.reduce((n, s) => n + s.deadLetter, 0);
  const cameras = await safe(
    'cameras',
    async () =>
      (
        await o.pool.query<{ camera_id: string; last: Date; recent: number }>(
          `SELECT camera_id, max(captured_at) AS last, count(*) FILTER (WHERE captured_at > now() - interval '10 seconds')::int AS recent
       FROM frame_metadata WHERE captured_at > now() - interval '1 hour' GROUP BY camera_id ORDER BY camera_id`,
        )
      ).rows.map((r) => ({ cameraId: r.camera_id, fps: r.recent / 10, lastFrameAgeMs: now - r.last.getTime() })),
    [] as CameraRow[],
  );
  const recentDrops = await safe(
    'drops',
    async () =>
      Object.fromEntries(
        (
          await o.pool.query<{ reason: string; n: number }>(
            `SELECT coalesce(dropped_reason, 'unknown') AS reason, count(*)::int AS n FROM frame_metadata
      WHERE captured_at > now() - interval '5 minutes' AND state = 'dropped' GROUP BY 1`,
          )
        ).rows.map((r) => [r.reason, r.n]),
      ),
    {} as Record<string, number>,
  );
  const cluster =
    o.redis instanceof Cluster
      ? await safe(
          'redis nodes',
          async () => {
            const [state, nodes] = await Promise.all([clusterState(o.redis), redisNodes(o.redis)]);
            return { state: state?.state ?? 'unknown', nodes };
          },
          undefined,
        )
      : undefined;
  return {
    at: new Date(now).toISOString(),
    cameras,
    queues,
    shards,
    processors,
    deadLetter,
    recentDrops,
    errors,
    ...(cluster ? { cluster } : {}),
  };
}
