import { columnList, unnestSelect } from './columns.js';
import { CAMERA_EVENT_COLUMNS, FRAME_EVENT_COLUMNS } from './event-columns.js';
import {
  STARTED_RANK,
  decisiveOrderSql,
  droppedBeforeRoutingSql,
  frameStateSql,
  stageCountsSql,
  stageEventSql,
  stageRankSql,
  stageStateSql,
  terminalEventSql,
  terminalFrameStateSql,
} from './lifecycle-sql.js';

/** A number from the frame.captured data, or NULL when absent, not a number or out of range. */
function num(key: string, type: string, max: number): string {
  const v = `(cap.data -> '${key}')`;
  return `CASE WHEN jsonb_typeof(${v}) = 'number' AND ${v}::numeric BETWEEN 0 AND ${max} THEN round(${v}::numeric)::${type} END`;
}

const EVENT_COLUMNS = columnList(FRAME_EVENT_COLUMNS);

/** What the projection reads of every event: all but the source, and data only of frame.captured. */
const NARROW = columnList(FRAME_EVENT_COLUMNS.filter((c) => c.name !== 'source' && c.name !== 'data'));

/*
 * One statement, so one snapshot, taken after the frames' locks:
 * - input: the batch (deduplicated by event id in JS), $1.. in FRAME_EVENT_COLUMNS order;
 * - stored: every stored event of the batch's frames, one index range per frame (the key
 *   starts with (captured_at, frame_id), so this reads one partition per frame);
 * - new_ev: the input minus what is stored. The locks guarantee no other writer adds
 *   events of these frames meanwhile, so a plain INSERT (no speculative ON CONFLICT
 *   insertion, no RETURNING) is exact; a writer that ignored the locks would get a
 *   unique violation and a retry, never a duplicate;
 * - ev: all events (stored + new) of the frames that got a new event; the projections of
 *   those frames are recomputed from them, so order and batching of arrival do not matter.
 *
 * Stage and frame state follow src/domain/lifecycle.ts, whose tables generate the CASEs
 * and the ORDER BY (src/store/lifecycle-sql.ts): a stage takes the state of its decisive
 * event (DECISIVE_ORDER), the frame the first FRAME_STATE_RULES rule over its stage counts,
 * a frame.dropped without processor meaning "dropped before routing". Unchanged stages are
 * not rewritten.
 */
export const WRITE_SQL = `
WITH input AS (
  ${unnestSelect(FRAME_EVENT_COLUMNS, 'e')}
),
touched AS (
  SELECT DISTINCT frame_id, captured_at FROM input
),
stored AS (
  -- An index probe per frame, whatever the planner guesses of the table's size (OFFSET 0
  -- keeps the subquery from being flattened into a join it could hash over a seq scan).
  SELECT s.* FROM touched t
  CROSS JOIN LATERAL (
    SELECT ${NARROW}, CASE WHEN f.type = 'frame.captured' THEN f.data END AS data
    FROM frame_events f
    WHERE f.captured_at = t.captured_at AND f.frame_id = t.frame_id
    OFFSET 0
  ) s
),
new_ev AS (
  SELECT i.* FROM input i
  WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.frame_id = i.frame_id AND s.event_id = i.event_id)
),
ins AS (
  INSERT INTO frame_events (${EVENT_COLUMNS})
  SELECT ${EVENT_COLUMNS} FROM new_ev
),
ev AS (
  SELECT ${NARROW}, data FROM stored s WHERE s.frame_id IN (SELECT frame_id FROM new_ev)
  UNION ALL
  SELECT ${NARROW}, CASE WHEN type = 'frame.captured' THEN data END FROM new_ev
),
-- One sort gives each stage its decisive event (the first row) and, over the same
-- partition, its aggregates.
st AS (
  SELECT DISTINCT ON (e.frame_id, e.processor_id)
         e.frame_id, e.captured_at, e.processor_id,
         max(e.capability) OVER w AS capability,
         ${stageStateSql('e.type')} AS state,
         greatest(coalesce(max(e.attempt) FILTER (WHERE e.rank >= ${STARTED_RANK}) OVER w, 0),
                  count(*) FILTER (WHERE e.type = 'processing.started') OVER w)::int AS attempts,
         min(e.at) FILTER (WHERE e.type = 'frame.queued') OVER w AS queued_at,
         min(e.at) FILTER (WHERE e.type = 'processing.started') OVER w AS started_at,
         CASE WHEN ${terminalEventSql('e.type')} THEN e.at END AS finished_at,
         CASE WHEN e.type IN ('processing.completed', 'processing.failed')
              THEN coalesce(e.duration_ms, extract(epoch FROM e.at - min(e.at) FILTER (WHERE e.type = 'processing.started') OVER w) * 1000) END AS duration_ms,
         CASE e.type WHEN 'processing.failed' THEN coalesce(e.error, e.reason)
                     WHEN 'frame.dropped' THEN coalesce(e.reason, e.error) END AS error,
         e.trace_id, e.span_id
  FROM (
    SELECT ev.*, ${stageRankSql('ev.type')} AS rank
    FROM ev WHERE ev.processor_id IS NOT NULL AND ${stageEventSql('ev.type')}
  ) e
  WINDOW w AS (PARTITION BY e.frame_id, e.processor_id)
  ORDER BY e.frame_id, e.processor_id, ${decisiveOrderSql('e')}
),
upsert_stages AS (
  INSERT INTO processing_stages (frame_id, captured_at, processor_id, capability, state, attempts, queued_at,
                                 started_at, finished_at, duration_ms, error, trace_id, span_id)
  SELECT frame_id, captured_at, processor_id, capability, state, attempts, queued_at,
         started_at, finished_at, duration_ms, error, trace_id, span_id
  FROM st
  ON CONFLICT (captured_at, frame_id, processor_id) DO UPDATE SET
    capability = EXCLUDED.capability, state = EXCLUDED.state, attempts = EXCLUDED.attempts,
    queued_at = EXCLUDED.queued_at, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
    duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error, trace_id = EXCLUDED.trace_id,
    span_id = EXCLUDED.span_id
  WHERE (processing_stages.*) IS DISTINCT FROM (EXCLUDED.*)
),
stage_counts AS (
  SELECT frame_id, ${stageCountsSql('state')}
  FROM st GROUP BY frame_id
),
cap AS (
  SELECT DISTINCT ON (frame_id) frame_id, camera_id, data, trace_id, sampled
  FROM ev WHERE type = 'frame.captured'
  ORDER BY frame_id, at, event_id
),
-- The frame's own drop first, else the first stage drop.
drop_reason AS (
  SELECT DISTINCT ON (frame_id) frame_id, coalesce(reason, error) AS reason
  FROM ev WHERE type = 'frame.dropped'
  ORDER BY frame_id, processor_id IS NOT NULL, at, event_id
),
fr AS (
  SELECT frame_id, captured_at, min(camera_id) AS camera_id, min(at) AS first_at, max(at) AS last_at,
         bool_or(${droppedBeforeRoutingSql('type', 'processor_id')}) AS dropped_before_routing,
         min(trace_id) AS any_trace_id, bool_or(sampled) AS any_sampled,
         max(at) FILTER (WHERE ${terminalEventSql('type')}) AS last_terminal_at
  FROM ev GROUP BY frame_id, captured_at
),
upsert_frames AS (
  INSERT INTO frame_metadata (frame_id, captured_at, camera_id, width, height, format, size_bytes, priority, state,
                              dropped_reason, trace_id, sampled, total_ms, first_event_at, last_event_at, updated_at)
  SELECT fr.frame_id, fr.captured_at, coalesce(cap.camera_id, fr.camera_id),
         ${num('width', 'int', 2147483647)}, ${num('height', 'int', 2147483647)},
         CASE WHEN jsonb_typeof(cap.data -> 'format') = 'string' THEN cap.data ->> 'format' END,
         ${num('sizeBytes', 'bigint', 9e18)}, ${num('priority', 'smallint', 32767)},
         s.state, CASE WHEN s.state = 'dropped' THEN d.reason END,
         -- Frames whose frame.captured has not arrived yet still link to their trace.
         coalesce(cap.trace_id, fr.any_trace_id), coalesce(cap.sampled, fr.any_sampled),
         CASE WHEN ${terminalFrameStateSql('s.state')}
              THEN extract(epoch FROM fr.last_terminal_at - fr.captured_at) * 1000 END,
         fr.first_at, fr.last_at, now()
  FROM fr
  LEFT JOIN cap USING (frame_id)
  LEFT JOIN stage_counts c USING (frame_id)
  LEFT JOIN drop_reason d USING (frame_id)
  CROSS JOIN LATERAL (SELECT ${frameStateSql('c', 'fr.dropped_before_routing')} AS state) s
  ON CONFLICT (captured_at, frame_id) DO UPDATE SET
    camera_id = EXCLUDED.camera_id, width = EXCLUDED.width, height = EXCLUDED.height, format = EXCLUDED.format,
    size_bytes = EXCLUDED.size_bytes, priority = EXCLUDED.priority, state = EXCLUDED.state,
    dropped_reason = EXCLUDED.dropped_reason, trace_id = EXCLUDED.trace_id, sampled = EXCLUDED.sampled,
    total_ms = EXCLUDED.total_ms, first_event_at = EXCLUDED.first_event_at, last_event_at = EXCLUDED.last_event_at,
    updated_at = now()
)
SELECT count(*)::int AS inserted FROM new_ev`;

export const CAMERA_SQL = `
WITH ins AS (
  INSERT INTO camera_events (${columnList(CAMERA_EVENT_COLUMNS)})
  ${unnestSelect(CAMERA_EVENT_COLUMNS, 'e')}
  ON CONFLICT (event_id) DO NOTHING
  RETURNING 1
)
SELECT count(*)::int AS n FROM ins`;
