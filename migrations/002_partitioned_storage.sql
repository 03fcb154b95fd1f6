-- 002: time-partitioned storage, camera events, hourly stats.
--
-- Runs with search_path set to the target schema (no schema qualifiers), inside the
-- migration runner's transaction. Rebuilds the three tables of 001 on one of two paths,
-- chosen once, here, and recorded in detektr_storage:
--
-- * timescaledb: the TimescaleDB extension is installed in this database, or available
--   and preloaded (shared_preload_libraries). Hypertables on the time column with
--   chunk_time_interval = the partition interval, compression of chunks older than
--   7 days (segmented by camera), a retention policy set by `detektr maintain
--   --retention`, and frame_stats_hourly as a continuous aggregate with a refresh policy.
-- * native: plain PostgreSQL. Tables PARTITION BY RANGE on the time column, one
--   partition per interval (UTC-aligned; created ahead by `detektr maintain`, by
--   ensure_partitions() below, and on demand by the store's writer), retention by
--   detaching and dropping whole partitions, frame_stats_hourly a table that `maintain`
--   refreshes incrementally.
--
-- The choice can be forced with `SET detektr.storage = 'native' | 'timescaledb'` (what
-- `detektr migrate --storage` does); the interval with `SET detektr.partition_interval`
-- (`--partition-interval`, default 1 day). See docs/architecture.md for the sizing rule.
--
-- Changes from 001 (the rows of 001's tables are copied over):
-- * frame_events' key is (captured_at, frame_id, event_id): a frame's events are one
--   index range, so the separate (frame_id, captured_at) index is gone (an index less to
--   maintain per event). Event ids stay unique: an event belongs to one frame, and its
--   replay carries the same frame id (hence the same captured_at).
-- * The state indexes are gone: state changes with every event, and an indexed column
--   that changes rules out HOT updates. frame_metadata and processing_stages get
--   fillfactor 80 so their upserts stay on the page. Searches by state use the camera
--   index or, for failed/dropped, the partial index of failure events.
-- * frame_events.sampled (the traceparent's sampled flag) and frame_metadata.sampled,
--   frame_metadata.total_ms (capture -> last terminal event; null while in flight).

CREATE TABLE detektr_storage (
  id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
  kind               text     NOT NULL CHECK (kind IN ('native', 'timescaledb')),
  partition_interval interval NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  -- native path: frame_stats_hourly is up to date up to here (set by `detektr maintain`).
  stats_refreshed_to timestamptz
);

-- Partitions covering the given times (each rounded down to the partition interval,
-- aligned on the Unix epoch, i.e. UTC midnight for 1 day), created when missing, for
-- every partitioned table. Returns how many it created. No-op on the timescaledb path.
-- Creators serialise on an advisory lock, so concurrent writers never race.
CREATE FUNCTION ensure_partitions(p_times timestamptz[]) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
  s       detektr_storage%ROWTYPE;
  b       timestamptz;
  t       text;
  part    text;
  created integer := 0;
  locked  boolean := false;
BEGIN
  SELECT * INTO s FROM detektr_storage;
  IF NOT FOUND OR s.kind <> 'native' THEN RETURN 0; END IF;
  FOR b IN SELECT DISTINCT date_bin(s.partition_interval, x, 'epoch'::timestamptz) FROM unnest(p_times) x WHERE x IS NOT NULL LOOP
    FOREACH t IN ARRAY ARRAY['frame_events', 'frame_metadata', 'processing_stages'] LOOP
      part := t || '_p' || to_char(b AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI');
      CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
      IF NOT locked THEN
        PERFORM pg_advisory_xact_lock(hashtext('detektr:partitions:' || current_schema()));
        locked := true;
      END IF;
      -- Under the lock, ask the catalog itself (a fresh snapshot): to_regclass may answer
      -- from a cache that has not yet seen the partition another writer just committed.
      CONTINUE WHEN EXISTS (SELECT 1 FROM pg_class WHERE relname = part AND relnamespace = current_schema()::regnamespace);
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)%s',
                     part, t, b, b + s.partition_interval,
                     CASE WHEN t = 'frame_events' THEN '' ELSE ' WITH (fillfactor = 80)' END);
      created := created + 1;
    END LOOP;
  END LOOP;
  RETURN created;
END
$fn$;

DO $migration$
DECLARE
  wanted   text := coalesce(nullif(current_setting('detektr.storage', true), ''), 'auto');
  interval_text text := coalesce(nullif(current_setting('detektr.partition_interval', true), ''), '1 day');
  iv       interval;
  ts       boolean;
  ts_schema name;
  part_by  text;
BEGIN
  IF wanted NOT IN ('auto', 'native', 'timescaledb') THEN
    RAISE EXCEPTION 'detektr.storage must be auto, native or timescaledb, not %', wanted;
  END IF;
  iv := interval_text::interval;
  IF iv < interval '1 hour' OR iv > interval '31 days' OR extract(month FROM iv) <> 0 THEN
    RAISE EXCEPTION 'partition interval % must be between 1 hour and 31 days (in hours or days)', iv;
  END IF;

  ts := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
        OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
            AND current_setting('shared_preload_libraries') ILIKE '%timescaledb%');
  IF wanted = 'timescaledb' AND NOT ts THEN
    RAISE EXCEPTION 'storage timescaledb asked for, but the timescaledb extension is neither installed nor preloaded';
  END IF;
  ts := ts AND wanted <> 'native';
  IF ts THEN
    CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public;
    SELECT n.nspname INTO ts_schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'timescaledb';
  END IF;
  INSERT INTO detektr_storage (kind, partition_interval) VALUES (CASE WHEN ts THEN 'timescaledb' ELSE 'native' END, iv);

  -- 001's tables keep their rows under a new name until they are copied.
  ALTER TABLE frame_events RENAME TO frame_events_v1;
  ALTER TABLE frame_metadata RENAME TO frame_metadata_v1;
  ALTER TABLE processing_stages RENAME TO processing_stages_v1;
  DROP INDEX frame_events_frame_idx, frame_metadata_camera_time_idx, frame_metadata_state_time_idx, processing_stages_state_time_idx;
  ALTER INDEX frame_events_pkey RENAME TO frame_events_v1_pkey;
  ALTER INDEX frame_metadata_pkey RENAME TO frame_metadata_v1_pkey;
  ALTER INDEX processing_stages_pkey RENAME TO processing_stages_v1_pkey;

  part_by := CASE WHEN ts THEN '' ELSE ' PARTITION BY RANGE (captured_at)' END;

  EXECUTE $ddl$
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
    sampled      boolean,
    data         jsonb,
    PRIMARY KEY (captured_at, frame_id, event_id)
  )$ddl$ || part_by;
  -- Failure analysis and searches for failed/dropped frames: only failure events are indexed.
  CREATE INDEX frame_events_failures_idx ON frame_events (captured_at)
    WHERE type IN ('processing.failed', 'frame.dropped');

  EXECUTE $ddl$
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
    sampled        boolean,
    total_ms       double precision,
    first_event_at timestamptz NOT NULL,
    last_event_at  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (captured_at, frame_id)
  )$ddl$ || part_by;
  CREATE INDEX frame_metadata_camera_time_idx ON frame_metadata (camera_id, captured_at);

  EXECUTE $ddl$
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
  )$ddl$ || part_by;

  IF ts THEN
    EXECUTE format('SELECT %I.create_hypertable(%L, %L, chunk_time_interval => %L::interval)', ts_schema, 'frame_events', 'captured_at', iv);
    EXECUTE format('SELECT %I.create_hypertable(%L, %L, chunk_time_interval => %L::interval)', ts_schema, 'frame_metadata', 'captured_at', iv);
    EXECUTE format('SELECT %I.create_hypertable(%L, %L, chunk_time_interval => %L::interval)', ts_schema, 'processing_stages', 'captured_at', iv);
    ALTER TABLE frame_metadata SET (fillfactor = 80);
    ALTER TABLE processing_stages SET (fillfactor = 80);
  ELSE
    -- Partitions for 001's rows and for the next two intervals.
    PERFORM ensure_partitions(array_cat(
      ARRAY(SELECT DISTINCT date_bin(iv, captured_at, 'epoch'::timestamptz) FROM frame_events_v1
            UNION SELECT DISTINCT date_bin(iv, captured_at, 'epoch'::timestamptz) FROM frame_metadata_v1
            UNION SELECT DISTINCT date_bin(iv, captured_at, 'epoch'::timestamptz) FROM processing_stages_v1),
      ARRAY[now(), now() + iv, now() + 2 * iv]));
  END IF;

  INSERT INTO frame_events (event_id, frame_id, camera_id, type, at, captured_at, source, processor_id, capability,
                            attempt, duration_ms, error, reason, trace_id, span_id, data)
  SELECT event_id, frame_id, camera_id, type, at, captured_at, source, processor_id, capability,
         attempt, duration_ms, error, reason, trace_id, span_id, data
  FROM frame_events_v1 ON CONFLICT DO NOTHING;
  INSERT INTO frame_metadata (frame_id, captured_at, camera_id, width, height, format, size_bytes, priority, state,
                              dropped_reason, trace_id, total_ms, first_event_at, last_event_at, updated_at)
  SELECT frame_id, captured_at, camera_id, width, height, format, size_bytes, priority, state,
         dropped_reason, trace_id,
         CASE WHEN state IN ('completed', 'failed', 'dropped') THEN extract(epoch FROM last_event_at - captured_at) * 1000 END,
         first_event_at, last_event_at, updated_at
  FROM frame_metadata_v1;
  INSERT INTO processing_stages SELECT * FROM processing_stages_v1;
  DROP TABLE frame_events_v1, frame_metadata_v1, processing_stages_v1;

  -- Hourly per-camera figures for dashboards and `detektr validate`.
  IF ts THEN
    EXECUTE $ddl$
    CREATE MATERIALIZED VIEW frame_stats_hourly WITH (timescaledb.continuous) AS
    SELECT time_bucket(interval '1 hour', captured_at) AS bucket, camera_id,
           count(*) AS frames,
           sum(CASE WHEN state = 'completed' THEN 1 ELSE 0 END) AS completed,
           sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed,
           sum(CASE WHEN state = 'dropped' THEN 1 ELSE 0 END) AS dropped,
           sum(CASE WHEN state IN ('captured', 'queued', 'processing') THEN 1 ELSE 0 END) AS in_flight,
           avg(total_ms) AS avg_total_ms,
           max(total_ms) AS max_total_ms
    FROM frame_metadata
    GROUP BY time_bucket(interval '1 hour', captured_at), camera_id
    WITH NO DATA$ddl$;
    EXECUTE format($f$SELECT %I.add_continuous_aggregate_policy('frame_stats_hourly',
                     start_offset => interval '3 days', end_offset => interval '1 hour', schedule_interval => interval '30 minutes')$f$, ts_schema);
    -- Compression: chunks older than 7 days, one segment per camera, newest first.
    ALTER TABLE frame_events SET (timescaledb.compress, timescaledb.compress_segmentby = 'camera_id',
                                  timescaledb.compress_orderby = 'captured_at DESC, frame_id, event_id');
    ALTER TABLE frame_metadata SET (timescaledb.compress, timescaledb.compress_segmentby = 'camera_id',
                                    timescaledb.compress_orderby = 'captured_at DESC, frame_id');
    ALTER TABLE processing_stages SET (timescaledb.compress, timescaledb.compress_segmentby = 'processor_id',
                                       timescaledb.compress_orderby = 'captured_at DESC, frame_id');
    EXECUTE format($f$SELECT %I.add_compression_policy(t, interval '7 days') FROM unnest(ARRAY['frame_events', 'frame_metadata', 'processing_stages']::regclass[]) t$f$, ts_schema);
  ELSE
    CREATE TABLE frame_stats_hourly (
      bucket       timestamptz NOT NULL,
      camera_id    text COLLATE "C" NOT NULL,
      frames       bigint NOT NULL,
      completed    bigint NOT NULL,
      failed       bigint NOT NULL,
      dropped      bigint NOT NULL,
      in_flight    bigint NOT NULL,
      avg_total_ms double precision,
      max_total_ms double precision,
      PRIMARY KEY (bucket, camera_id)
    );
  END IF;
END
$migration$;

-- Camera lifecycle (camera.online / camera.offline / camera.frozen), idempotent by event id.
-- A few rows per camera per day: one plain table on both paths, trimmed by `maintain`.
CREATE TABLE camera_events (
  event_id    text        COLLATE "C" PRIMARY KEY,
  camera_id   text        COLLATE "C" NOT NULL,
  type        text        NOT NULL CHECK (type IN ('camera.online', 'camera.offline', 'camera.frozen')),
  at          timestamptz NOT NULL,
  source      text        NOT NULL,
  reason      text,
  data        jsonb,
  stored_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX camera_events_camera_time_idx ON camera_events (camera_id, at);
CREATE INDEX camera_events_time_idx ON camera_events (at);
