-- 001: frame tracking tables.
--
-- Runs with search_path set to the target schema: no schema qualifiers here.
-- Every key includes captured_at (the time in the frame's ULID) so a later migration can
-- range-partition (or make hypertables) by captured_at without changing a key, and every
-- lookup by frame id names its partition. frame_metadata and processing_stages are looked
-- up by their primary keys (captured_at, frame_id, ...); frame_events needs its own index.
-- Ids are COLLATE "C": byte order is the ULID's time order, and it keeps index inserts and
-- the writer's sorts off the (much slower) locale comparison.

-- The event log: source of truth. frame_metadata and processing_stages are projections
-- of it, recomputed per frame by src/store/event-writer.ts.
CREATE TABLE frame_events (
  event_id     text        COLLATE "C" NOT NULL,
  frame_id     text        COLLATE "C" NOT NULL,
  camera_id    text        COLLATE "C" NOT NULL,
  type         text        NOT NULL CHECK (type IN ('frame.captured', 'frame.queued', 'processing.started',
                                                    'processing.completed', 'processing.failed', 'frame.dropped')),
  at           timestamptz NOT NULL,
  captured_at  timestamptz NOT NULL,
  source       text        NOT NULL,
  processor_id text        COLLATE "C",
  capability   text,
  attempt      integer,
  duration_ms  double precision,
  error        text,
  reason       text,
  trace_id     text,
  span_id      text,
  data         jsonb,
  -- Idempotency by event id (ULIDs do not repeat across frames, so captured_at only
  -- narrows the key to one partition).
  PRIMARY KEY (captured_at, event_id)
);
CREATE INDEX frame_events_frame_idx ON frame_events (frame_id, captured_at);

CREATE TABLE frame_metadata (
  frame_id       text        COLLATE "C" NOT NULL,
  captured_at    timestamptz NOT NULL,
  camera_id      text        COLLATE "C" NOT NULL,
  width          integer,
  height         integer,
  format         text,
  size_bytes     bigint,
  priority       smallint,
  state          text        NOT NULL CHECK (state IN ('captured', 'queued', 'processing', 'completed', 'failed', 'dropped')),
  dropped_reason text,
  trace_id       text,
  first_event_at timestamptz NOT NULL,
  last_event_at  timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (captured_at, frame_id)
);
CREATE INDEX frame_metadata_camera_time_idx ON frame_metadata (camera_id, captured_at DESC);
CREATE INDEX frame_metadata_state_time_idx ON frame_metadata (state, captured_at DESC);

-- One row per frame x processor. Redeliveries of the same hand-off are attempts of one
-- stage (the stage machine's processing -> processing), counted in `attempts`; a row per
-- attempt would make "what happened to frame X at processor P" a second aggregation in
-- every query, while the per-attempt detail stays in frame_events.
CREATE TABLE processing_stages (
  frame_id     text        COLLATE "C" NOT NULL,
  captured_at  timestamptz NOT NULL,
  processor_id text        COLLATE "C" NOT NULL,
  capability   text,
  state        text        NOT NULL CHECK (state IN ('queued', 'processing', 'completed', 'failed', 'dropped')),
  attempts     integer     NOT NULL DEFAULT 0,
  queued_at    timestamptz,
  started_at   timestamptz,
  finished_at  timestamptz,
  duration_ms  double precision,
  error        text,
  trace_id     text,
  span_id      text,
  PRIMARY KEY (captured_at, frame_id, processor_id)
);
CREATE INDEX processing_stages_state_time_idx ON processing_stages (state, captured_at DESC);
