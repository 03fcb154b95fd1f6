import type pg from 'pg';
import type { CameraEventType } from '../domain/camera-events.js';
import { InvalidInputError } from '../domain/errors.js';
import { FRAME_STATES, type FrameState, type StageState } from '../domain/lifecycle.js';

/**
 * The list queries behind `detektr trace slow|failures|search|camera`. Each is bounded by
 * a time window on the partition key (captured_at, or at for camera events), so it reads
 * only the partitions of that window however many months are stored. Their results are
 * also the `--json` output of the commands (times ISO-8601 UTC, durations milliseconds).
 */

export interface TimeWindow {
  /** Start of the window, ms since epoch (inclusive). */
  sinceMs: number;
  /** End of the window, ms since epoch (exclusive); default now. */
  untilMs?: number;
}

export interface StageBrief {
  processorId: string;
  capability: string | null;
  state: StageState;
  attempts: number;
  /** queued -> started */
  waitMs: number | null;
  /** the processor's run */
  durationMs: number | null;
  error?: string;
}

/** A frame in a list: `trace slow` and `trace search` rows. */
export interface FrameBrief {
  frameId: string;
  cameraId: string;
  capturedAt: string;
  state: FrameState;
  /** capture -> last terminal event; null while in flight */
  totalMs: number | null;
  droppedReason?: string;
  traceId: string | null;
  stages: StageBrief[];
}

export interface SlowReport {
  window: { since: string; until: string };
  thresholdMs: number;
  cameraId?: string;
  /** Finished frames (completed, failed, dropped) in the window, and how many took >= threshold. */
  finished: number;
  slow: number;
  /** End-to-end latency percentiles of the finished frames in the window. */
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  /** The slowest first, at most `limit`. */
  frames: FrameBrief[];
}

export interface FailureGroup {
  /** The processor, or null for a frame dropped before routing (buffer). */
  processorId: string | null;
  capability: string | null;
  /** processing.failed or frame.dropped */
  type: 'processing.failed' | 'frame.dropped';
  /** The message up to its first ": " (e.g. "TimeoutError"), or the message with digits as N. */
  errorType: string;
  count: number;
  frames: number;
  cameras: string[];
  firstAt: string;
  lastAt: string;
  sampleMessage: string;
  /** The latest few frames of the group, for `trace find`. */
  exampleFrameIds: string[];
}

export interface FailureReport {
  window: { since: string; until: string };
  cameraId?: string;
  total: number;
  groups: FailureGroup[];
}

export interface CameraEventRow {
  eventId: string;
  cameraId: string;
  type: CameraEventType;
  at: string;
  source: string;
  reason?: string;
  data?: Record<string, unknown>;
}

export interface OfflinePeriod {
  cameraId: string;
  from: string;
  /** null: still offline at the end of the window */
  to: string | null;
  durationMs: number | null;
  reason?: string;
}

export interface CameraReport {
  window: { since: string; until: string };
  cameraId?: string;
  events: CameraEventRow[];
  offline: OfflinePeriod[];
}

function window(w: TimeWindow): { since: Date; until: Date } {
  const until = w.untilMs ?? Date.now();
  if (!Number.isFinite(w.sinceMs) || !Number.isFinite(until) || w.sinceMs >= until) {
    throw new InvalidInputError('the time window is empty: --since must lie before --until');
  }
  return { since: new Date(w.sinceMs), until: new Date(until) };
}

function checkLimit(limit: number | undefined, fallback: number): number {
  const n = limit ?? fallback;
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new InvalidInputError(`limit ${limit} must be an integer between 1 and 10000`);
  return n;
}

const ms = (v: number | null) => (v === null || v === undefined ? null : Math.round(Number(v) * 1000) / 1000);

interface FrameRow {
  frame_id: string;
  camera_id: string;
  captured_at: Date;
  state: FrameState;
  total_ms: number | null;
  dropped_reason: string | null;
  trace_id: string | null;
  stages: Array<{
    processor_id: string;
    capability: string | null;
    state: StageState;
    attempts: number;
    wait_ms: number | null;
    duration_ms: number | null;
    error: string | null;
  }> | null;
}

// The stages of a listed frame (a few rows, by primary key).
const STAGES_OF = `
  (SELECT json_agg(s ORDER BY s.processor_id) FROM (
     SELECT processor_id, capability, state, attempts, extract(epoch FROM started_at - queued_at) * 1000 AS wait_ms,
            duration_ms, error
     FROM processing_stages ps WHERE ps.captured_at = m.captured_at AND ps.frame_id = m.frame_id) s) AS stages`;

function frameBrief(r: FrameRow): FrameBrief {
  return {
    frameId: r.frame_id,
    cameraId: r.camera_id,
    capturedAt: r.captured_at.toISOString(),
    state: r.state,
    totalMs: ms(r.total_ms),
    ...(r.state === 'dropped' && r.dropped_reason ? { droppedReason: r.dropped_reason } : {}),
    traceId: r.trace_id,
    stages: (r.stages ?? []).map((s) => ({
      processorId: s.processor_id,
      capability: s.capability,
      state: s.state,
      attempts: s.attempts,
      waitMs: ms(s.wait_ms),
      durationMs: ms(s.duration_ms),
      ...(s.error ? { error: s.error } : {}),
    })),
  };
}

export interface SlowOptions extends TimeWindow {
  thresholdMs: number;
  cameraId?: string;
  limit?: number;
}

/** Finished frames whose capture -> last terminal event took at least thresholdMs. */
export async function findSlowFrames(db: pg.Pool | pg.PoolClient, opts: SlowOptions): Promise<SlowReport> {
  const { since, until } = window(opts);
  const limit = checkLimit(opts.limit, 20);
  if (!Number.isFinite(opts.thresholdMs) || opts.thresholdMs < 0)
    throw new InvalidInputError(`threshold ${opts.thresholdMs} must be a duration >= 0`);
  const camera = opts.cameraId ?? null;
  const { rows } = await db.query<{
    summary: { finished: number; slow: number; p50: number | null; p95: number | null; p99: number | null };
    frames: FrameRow[] | null;
  }>(
    `WITH w AS (
       SELECT frame_id, camera_id, captured_at, state, total_ms, dropped_reason, trace_id
       FROM frame_metadata
       WHERE captured_at >= $1 AND captured_at < $2 AND total_ms IS NOT NULL
         AND ($4::text IS NULL OR camera_id = $4::text)
     )
     SELECT
       (SELECT json_build_object('finished', count(*), 'slow', count(*) FILTER (WHERE total_ms >= $3),
                                 'p50', percentile_cont(0.5) WITHIN GROUP (ORDER BY total_ms),
                                 'p95', percentile_cont(0.95) WITHIN GROUP (ORDER BY total_ms),
                                 'p99', percentile_cont(0.99) WITHIN GROUP (ORDER BY total_ms)) FROM w) AS summary,
       (SELECT json_agg(f ORDER BY f.total_ms DESC, f.frame_id) FROM (
          SELECT m.*, ${STAGES_OF}
          FROM (SELECT * FROM w WHERE total_ms >= $3 ORDER BY total_ms DESC, frame_id LIMIT $5) m) f) AS frames`,
    [since, until, opts.thresholdMs, camera, limit],
  );
  const { summary, frames } = rows[0];
  return {
    window: { since: since.toISOString(), until: until.toISOString() },
    thresholdMs: opts.thresholdMs,
    ...(opts.cameraId ? { cameraId: opts.cameraId } : {}),
    finished: summary.finished,
    slow: summary.slow,
    p50Ms: ms(summary.p50),
    p95Ms: ms(summary.p95),
    p99Ms: ms(summary.p99),
    frames: (frames ?? []).map((f) => frameBrief({ ...f, captured_at: new Date(f.captured_at) })),
  };
}

export interface FailureOptions extends TimeWindow {
  cameraId?: string;
  limit?: number;
}

/**
 * Failed stages and dropped frames, grouped by stage (processor) and error type. Reads the
 * failure events through their partial index, so it costs what failed, not what flowed.
 */
export async function findFailures(db: pg.Pool | pg.PoolClient, opts: FailureOptions): Promise<FailureReport> {
  const { since, until } = window(opts);
  const limit = checkLimit(opts.limit, 50);
  const { rows } = await db.query<{
    processor_id: string | null;
    capability: string | null;
    type: FailureGroup['type'];
    error_type: string;
    n: number;
    frames: number;
    cameras: string[];
    first_at: Date;
    last_at: Date;
    sample: string;
    examples: string[];
  }>(
    `WITH f AS (
       SELECT frame_id, camera_id, processor_id, capability, type, at,
              coalesce(nullif(error, ''), nullif(reason, ''), '(no message)') AS msg
       FROM frame_events
       WHERE type IN ('processing.failed', 'frame.dropped') AND captured_at >= $1 AND captured_at < $2
         AND ($3::text IS NULL OR camera_id = $3::text)
     ), t AS (
       SELECT f.*, CASE WHEN position(': ' IN msg) BETWEEN 2 AND 60 THEN left(msg, position(': ' IN msg) - 1)
                        ELSE left(regexp_replace(msg, '[0-9]+', 'N', 'g'), 80) END AS error_type
       FROM f
     )
     SELECT processor_id, max(capability) AS capability, type, error_type, count(*)::int AS n,
            count(DISTINCT frame_id)::int AS frames, array_agg(DISTINCT camera_id ORDER BY camera_id) AS cameras,
            min(at) AS first_at, max(at) AS last_at, max(msg) AS sample,
            (array_agg(frame_id ORDER BY at DESC))[1:3] AS examples
     FROM t GROUP BY processor_id, type, error_type
     ORDER BY n DESC, processor_id NULLS FIRST, error_type COLLATE "C"
     LIMIT $4`,
    [since, until, opts.cameraId ?? null, limit],
  );
  const groups = rows.map((r) => ({
    processorId: r.processor_id,
    capability: r.capability,
    type: r.type,
    errorType: r.error_type,
    count: r.n,
    frames: r.frames,
    cameras: r.cameras,
    firstAt: r.first_at.toISOString(),
    lastAt: r.last_at.toISOString(),
    sampleMessage: r.sample,
    exampleFrameIds: r.examples,
  }));
  return {
    window: { since: since.toISOString(), until: until.toISOString() },
    ...(opts.cameraId ? { cameraId: opts.cameraId } : {}),
    total: groups.reduce((n, g) => n + g.count, 0),
    groups,
  };
}

export interface SearchOptions extends TimeWindow {
  cameraId?: string;
  state?: FrameState;
  limit?: number;
}

export function parseFrameState(value: string): FrameState {
  if (!(FRAME_STATES as readonly string[]).includes(value)) {
    throw new InvalidInputError(`state "${value}" is not one of ${FRAME_STATES.join(', ')}`);
  }
  return value as FrameState;
}

/** Frames by camera / state / time, newest first. */
export async function searchFrames(
  db: pg.Pool | pg.PoolClient,
  opts: SearchOptions,
): Promise<{ window: { since: string; until: string }; frames: FrameBrief[] }> {
  const { since, until } = window(opts);
  const limit = checkLimit(opts.limit, 50);
  const state = opts.state === undefined ? null : parseFrameState(opts.state);
  const camera = opts.cameraId ?? null;
  // failed and dropped frames are rare: find them through the failure events' partial
  // index rather than walking every frame of the window.
  const viaFailures = state === 'failed' || state === 'dropped';
  const source = viaFailures
    ? `(SELECT m.* FROM (SELECT DISTINCT captured_at, frame_id FROM frame_events
                         WHERE type IN ('processing.failed', 'frame.dropped') AND captured_at >= $1 AND captured_at < $2
                           AND ($3::text IS NULL OR camera_id = $3::text)) x
        JOIN LATERAL (SELECT * FROM frame_metadata m WHERE m.captured_at = x.captured_at AND m.frame_id = x.frame_id) m ON true
        WHERE m.state = $4::text)`
    : `(SELECT * FROM frame_metadata WHERE captured_at >= $1 AND captured_at < $2
          AND ($3::text IS NULL OR camera_id = $3::text) AND ($4::text IS NULL OR state = $4::text))`;
  const { rows } = await db.query<FrameRow>(
    `SELECT m.frame_id, m.camera_id, m.captured_at, m.state, m.total_ms, m.dropped_reason, m.trace_id, ${STAGES_OF}
     FROM (SELECT * FROM ${source} src ORDER BY captured_at DESC, frame_id DESC LIMIT $5) m
     ORDER BY m.captured_at DESC, m.frame_id DESC`,
    [since, until, camera, state, limit],
  );
  return { window: { since: since.toISOString(), until: until.toISOString() }, frames: rows.map(frameBrief) };
}

export interface CameraOptions extends TimeWindow {
  cameraId?: string;
  limit?: number;
}

/** Camera lifecycle events (newest last) and the offline periods they describe. */
export async function findCameraEvents(db: pg.Pool | pg.PoolClient, opts: CameraOptions): Promise<CameraReport> {
  const { since, until } = window(opts);
  const limit = checkLimit(opts.limit, 200);
  const { rows } = await db.query<{
    event_id: string;
    camera_id: string;
    type: CameraEventType;
    at: Date;
    source: string;
    reason: string | null;
    data: Record<string, unknown> | null;
  }>(
    `SELECT * FROM (
       SELECT event_id, camera_id, type, at, source, reason, data FROM camera_events
       WHERE at >= $1 AND at < $2 AND ($3::text IS NULL OR camera_id = $3::text)
       ORDER BY at DESC, event_id DESC LIMIT $4) e
     ORDER BY at, event_id`,
    [since, until, opts.cameraId ?? null, limit],
  );
  const events = rows.map((r) => ({
    eventId: r.event_id,
    cameraId: r.camera_id,
    type: r.type,
    at: r.at.toISOString(),
    source: r.source,
    ...(r.reason ? { reason: r.reason } : {}),
    ...(r.data ? { data: r.data } : {}),
  }));
  return {
    window: { since: since.toISOString(), until: until.toISOString() },
    ...(opts.cameraId ? { cameraId: opts.cameraId } : {}),
    events,
    offline: offlinePeriods(events),
  };
}

/** camera.offline .. the next camera.online of the same camera. */
export function offlinePeriods(events: readonly CameraEventRow[]): OfflinePeriod[] {
  const open = new Map<string, CameraEventRow>();
  const out: OfflinePeriod[] = [];
  for (const e of events) {
    if (e.type === 'camera.offline') {
      if (!open.has(e.cameraId)) open.set(e.cameraId, e);
    } else if (e.type === 'camera.online') {
      const from = open.get(e.cameraId);
      if (!from) continue;
      open.delete(e.cameraId);
      out.push({
        cameraId: e.cameraId,
        from: from.at,
        to: e.at,
        durationMs: Date.parse(e.at) - Date.parse(from.at),
        ...(from.reason ? { reason: from.reason } : {}),
      });
    }
  }
  for (const from of open.values()) {
    out.push({ cameraId: from.cameraId, from: from.at, to: null, durationMs: null, ...(from.reason ? { reason: from.reason } : {}) });
  }
  return out.sort((a, b) => a.from.localeCompare(b.from));
}
