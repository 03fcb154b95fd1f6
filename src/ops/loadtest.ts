import type { Tracer } from '@opentelemetry/api';
import type { RedisClient } from '../bus/redis.js';
import type pg from 'pg';
import { groupLag } from '../bus/group-lag.js';
import { GROUPS } from '../bus/keys.js';
import type { ShardSet } from '../bus/shards.js';
import { publishFrame } from '../bus/publish-frame.js';
import { sleep } from '../bus/backoff.js';
import { SYNTHETIC_JPEG_SIZE, syntheticJpeg } from './synthetic-jpeg.js';

export interface LoadtestGates {
  /** Frames sent but neither completed, failed nor dropped, in % of sent. */
  maxLossPct: number;
  /** Frames whose journey is complete with one trace, in % of sent. */
  minCompletenessPct: number;
  /** End-to-end latency (capture -> last processing.completed), 95th percentile. */
  maxP95Ms: number;
  /** Frames that ended failed, in % of sent. */
  maxFailedPct: number;
}

export const DEFAULT_GATES: LoadtestGates = { maxLossPct: 1, minCompletenessPct: 99, maxP95Ms: 100, maxFailedPct: 1 };

export interface LoadtestOptions {
  redis: RedisClient;
  pool: pg.Pool;
  /** Each synthetic camera's frames go to its shard, as capture's would. */
  shards: ShardSet;
  tracer: Tracer;
  fps: number;
  cameras: number;
  durationMs: number;
  payloadBytes: number;
  payloadTtlMs: number;
  streamMaxLen: number;
  /** After sending, how long to wait for every frame to reach a final state. */
  drainTimeoutMs: number;
  gates: LoadtestGates;
  onProgress?: (p: LoadtestProgress) => void;
  signal?: AbortSignal;
}

export interface LoadtestProgress {
  elapsedMs: number;
  phase: 'sending' | 'draining';
  sent: number;
  sendErrors: number;
  completed: number;
  failed: number;
  dropped: number;
  inFlight: number;
  captureLag: number | null;
}

export interface GateResult {
  gate: string;
  value: number;
  threshold: number;
  pass: boolean;
}

export interface LoadtestReport {
  runId: string;
  config: { fps: number; cameras: number; durationMs: number; payloadBytes: number };
  sent: number;
  sendErrors: number;
  completed: number;
  failed: number;
  dropped: number;
  droppedByReason: Record<string, number>;
  unaccounted: number;
  throughputFps: number;
  latencyMs: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
  journeyCompletenessPct: number;
  /** Per shard: the synthetic cameras it got, the frames sent to it and how they ended. */
  shards: { shard: number; cameras: number; sent: number; completed: number; failed: number; dropped: number; unaccounted: number }[];
  gates: GateResult[];
  pass: boolean;
}

const pct = (n: number, of: number) => (of === 0 ? 0 : (100 * n) / of);

interface Counts {
  completed: number;
  failed: number;
  dropped: number;
  captured: number;
  other: number;
}

async function stateCounts(pool: pg.Pool, cameras: string[], since: Date): Promise<Counts> {
  const { rows } = await pool.query<{ state: string; n: number }>(
    'SELECT state, count(*)::int AS n FROM frame_metadata WHERE camera_id = ANY($1) AND captured_at >= $2 GROUP BY state',
    [cameras, since],
  );
  const c: Counts = { completed: 0, failed: 0, dropped: 0, captured: 0, other: 0 };
  for (const r of rows) {
    if (r.state === 'completed' || r.state === 'failed' || r.state === 'dropped' || r.state === 'captured') c[r.state] += r.n;
    else c.other += r.n;
  }
  return c;
}

/**
 * Injects synthetic frames (a decodable JPEG padded to the payload size) at fps x cameras
 * for the duration, exactly as capture publishes them, then waits for every frame to end
 * and reads the outcome from what the store recorded: counts, latency, completeness.
 * The loop is bounded by count and time; it only talks to the configured Redis/PostgreSQL.
 */
export async function runLoadtest(o: LoadtestOptions): Promise<LoadtestReport> {
  const runId = Math.random().toString(36).slice(2, 8);
  const cameras = Array.from({ length: o.cameras }, (_, i) => `lt-${runId}-${i + 1}`);
  const payload = syntheticJpeg(o.payloadBytes);
  const deps = { redis: o.redis, tracer: o.tracer, payloadTtlMs: o.payloadTtlMs, streamMaxLen: o.streamMaxLen };
  const sentPerShard = new Array<number>(o.shards.count).fill(0);
  const since = new Date(Date.now() - 1000);
  const intervalMs = 1000 / (o.fps * o.cameras);
  const total = Math.floor((o.durationMs / 1000) * o.fps * o.cameras);
  const started = performance.now();
  let sent = 0;
  let sendErrors = 0;
  let counts: Counts = { completed: 0, failed: 0, dropped: 0, captured: 0, other: 0 };
  let phase: LoadtestProgress['phase'] = 'sending';
  let captureLag: number | null = null;

  const report = async () => {
    counts = await stateCounts(o.pool, cameras, since);
    const lags = await Promise.all(
      o.shards.all.map(async (k) => (await groupLag(o.redis, k.captured)).find((g) => g.group === GROUPS.buffer)?.lag ?? null),
    );
    captureLag = lags.some((l) => l === null) ? null : lags.reduce((a: number, b) => a + (b ?? 0), 0);
    o.onProgress?.({
      elapsedMs: performance.now() - started,
      phase,
      sent,
      sendErrors,
      completed: counts.completed,
      failed: counts.failed,
      dropped: counts.dropped,
      inFlight: sent - counts.completed - counts.failed - counts.dropped,
      captureLag,
    });
  };
  const progress = setInterval(() => void report().catch(() => undefined), 1000);
  const inflight = new Set<Promise<void>>();
  try {
    for (let k = 0; k < total && !o.signal?.aborted; k++) {
      const due = started + k * intervalMs;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      // Publishing is not awaited one by one, so a slow round trip does not lower the rate;
      // at most 64 publishes are in flight.
      const cameraId = cameras[k % cameras.length];
      const keys = o.shards.forCamera(cameraId);
      const p = publishFrame(
        { ...deps, keys },
        {
          cameraId,
          jpeg: payload,
          ...SYNTHETIC_JPEG_SIZE,
          data: { loadtest: runId },
        },
      )
        .then(
          () => {
            sent++;
            sentPerShard[keys.shard]++;
          },
          () => {
            sendErrors++;
          },
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= 64) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    const sendMs = performance.now() - started;
    phase = 'draining';
    const drainEnd = Date.now() + o.drainTimeoutMs;
    while (Date.now() < drainEnd && !o.signal?.aborted) {
      try {
        counts = await stateCounts(o.pool, cameras, since);
        if (counts.completed + counts.failed + counts.dropped >= sent) break;
      } catch {
        // The database is away (e.g. restarting): frames wait in Redis; ask again until the drain timeout.
      }
      await sleep(250);
    }
    clearInterval(progress);
    await report().catch(() => undefined);
    return await buildReport(o, runId, cameras, since, sent, sendErrors, sendMs, sentPerShard);
  } finally {
    clearInterval(progress);
  }
}

async function buildReport(
  o: LoadtestOptions,
  runId: string,
  cameras: string[],
  since: Date,
  sent: number,
  sendErrors: number,
  sendMs: number,
  sentPerShard: number[],
): Promise<LoadtestReport> {
  const counts = await stateCounts(o.pool, cameras, since);
  const byCamera = await o.pool.query<{ camera_id: string; state: string; n: number }>(
    'SELECT camera_id, state, count(*)::int AS n FROM frame_metadata WHERE camera_id = ANY($1) AND captured_at >= $2 GROUP BY 1, 2',
    [cameras, since],
  );
  const shards = sentPerShard.map((n, shard) => ({ shard, cameras: 0, sent: n, completed: 0, failed: 0, dropped: 0, unaccounted: 0 }));
  for (const c of cameras) shards[o.shards.shardOf(c)].cameras++;
  for (const r of byCamera.rows) {
    const s = shards[o.shards.shardOf(r.camera_id)];
    if (r.state === 'completed' || r.state === 'failed' || r.state === 'dropped') s[r.state] += r.n;
  }
  for (const s of shards) s.unaccounted = Math.max(0, s.sent - s.completed - s.failed - s.dropped);
  const dropped = await o.pool.query<{ reason: string; n: number }>(
    // By the reason's class: what follows " (" carries live numbers (a shed's queue lengths).
    "SELECT coalesce(split_part(dropped_reason, ' (', 1), 'unknown') AS reason, count(*)::int AS n FROM frame_metadata WHERE camera_id = ANY($1) AND captured_at >= $2 AND state = 'dropped' GROUP BY 1",
    [cameras, since],
  );
  const lat = await o.pool.query<{ p50: number | null; p95: number | null; p99: number | null; max: number | null }>(
    `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max
       FROM (SELECT extract(epoch FROM (last_event_at - captured_at)) * 1000 AS ms
               FROM frame_metadata WHERE camera_id = ANY($1) AND captured_at >= $2 AND state = 'completed') l`,
    [cameras, since],
  );
  // A complete journey: born, queued, started and finished, every event on the frame's one trace.
  const complete = await o.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (
       SELECT e.frame_id
         FROM frame_events e JOIN frame_metadata m ON m.captured_at = e.captured_at AND m.frame_id = e.frame_id
        WHERE e.camera_id = ANY($1) AND e.captured_at >= $2
        GROUP BY e.frame_id, m.trace_id
       HAVING bool_or(e.type = 'frame.captured') AND bool_or(e.type = 'frame.queued') AND bool_or(e.type = 'processing.started')
          AND bool_or(e.type IN ('processing.completed', 'processing.failed'))
          AND count(DISTINCT e.trace_id) = 1 AND bool_and(e.trace_id = m.trace_id)) c`,
    [cameras, since],
  );
  const terminal = counts.completed + counts.failed + counts.dropped;
  const unaccounted = Math.max(0, sent - terminal);
  const l = lat.rows[0];
  const round = (v: number | null) => (v === null ? null : Math.round(Number(v) * 10) / 10);
  const completeness = pct(complete.rows[0].n, sent);
  const g = o.gates;
  const gates: GateResult[] = [
    {
      gate: 'loss %',
      value: pct(unaccounted + sendErrors, sent + sendErrors),
      threshold: g.maxLossPct,
      pass: pct(unaccounted + sendErrors, sent + sendErrors) < g.maxLossPct || unaccounted + sendErrors === 0,
    },
    { gate: 'failed %', value: pct(counts.failed, sent), threshold: g.maxFailedPct, pass: pct(counts.failed, sent) <= g.maxFailedPct },
    {
      gate: 'journey completeness %',
      value: completeness,
      threshold: g.minCompletenessPct,
      pass: completeness > g.minCompletenessPct || (sent > 0 && completeness === 100),
    },
    {
      gate: 'latency p95 ms',
      value: l.p95 === null ? Infinity : Number(l.p95),
      threshold: g.maxP95Ms,
      pass: l.p95 !== null && Number(l.p95) < g.maxP95Ms,
    },
  ].map((x) => ({ ...x, value: Math.round(x.value * 100) / 100 }));
  return {
    runId,
    config: { fps: o.fps, cameras: o.cameras, durationMs: o.durationMs, payloadBytes: o.payloadBytes },
    sent,
    sendErrors,
    completed: counts.completed,
    failed: counts.failed,
    dropped: counts.dropped,
    droppedByReason: Object.fromEntries(dropped.rows.map((r) => [r.reason, r.n])),
    unaccounted,
    throughputFps: Math.round((counts.completed / (sendMs / 1000)) * 10) / 10,
    latencyMs: { p50: round(l.p50), p95: round(l.p95), p99: round(l.p99), max: round(l.max) },
    journeyCompletenessPct: Math.round(completeness * 100) / 100,
    shards,
    gates,
    pass: gates.every((x) => x.pass) && sent > 0,
  };
}
