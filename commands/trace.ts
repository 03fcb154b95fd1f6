import { Command, Option } from 'commander';
import type pg from 'pg';
import { parseDuration } from '../src/config/parse-value.js';
import { redactValue } from '../src/config/redact-text.js';
import { parseFrameId, frameIdTime } from '../src/domain/frame-id.js';
import { DetektrError, InvalidInputError, NotFoundError } from '../src/domain/errors.js';
import { resolveBackends } from '../src/embedded/resolve-backends.js';
import { createPool } from '../src/store/pg.js';
import { findJourney } from '../src/trace/journey.js';
import { findCameraEvents, findFailures, findSlowFrames, parseFrameState, searchFrames } from '../src/trace/queries.js';
import { renderJourney } from '../src/trace/render-journey.js';
import { renderCamera, renderFailures, renderSearch, renderSlow } from '../src/trace/render-lists.js';
import { fetchSpans, parseBackendKind, traceLinks, type SpanSummary, type TraceBackendConfig } from '../src/trace/trace-backend.js';
import { resolveConfig, withConfigOptions } from './common.js';
import { colorEnabled } from '../src/terminal/colors.js';

/**
 * `detektr trace find|slow|failures|search|camera`: one-shot questions to the store.
 * Exit codes: 0 answered (an empty list is an answer), 1 frame not found or the database
 * cannot be reached, 2 bad input (frame id, duration, state, limit).
 */
export function traceCommand(): Command {
  const trace = new Command('trace').description(
    "ask where frames went: a frame's journey, slow frames, failures, searches, camera events",
  );

  const find = dbCommand(
    'find',
    "a frame's journey: lifecycle events, stages with durations and processors, camera events around it, trace link",
  )
    .argument('<frameId>', 'the frame id (a ULID, as printed in logs and events)')
    .option('--json', 'print the journey as JSON (shape documented in src/trace/journey.ts)')
    .option('--spans', "also fetch the frame's spans from the trace backend and show them in the timeline")
    .option('--camera-window <duration>', 'camera events this long before and after the capture', '60s');
  withTraceBackendOptions(find);
  find.action(async (frameIdArg: string, flags: Flags) => {
    const frameId = parseFrameId(frameIdArg);
    const cameraWindowMs = parseDuration(String(flags.cameraWindow), '--camera-window');
    const backend = backendConfig(flags);
    await withPool(flags, async (pool, schema) => {
      const journey = await findJourney(pool, frameId, { cameraWindowMs });
      if (!journey)
        throw new NotFoundError(
          `frame ${frameId} not found in ${schema} (is \`detektr store\` running, and is the frame older than the retention?)`,
        );
      const ref = { traceId: journey.traceId, frameId, capturedAtMs: frameIdTime(frameId) };
      const links = traceLinks(backend, ref);
      let spans: SpanSummary[] | undefined;
      let spansError: string | undefined;
      if (flags.spans) {
        try {
          spans = await fetchSpans(backend, ref);
        } catch (err) {
          spansError = (err as Error).message;
        }
      }
      if (flags.json) {
        out(JSON.stringify({ ...journey, ...links, ...(spans ? { spans } : {}), ...(spansError ? { spansError } : {}) }, null, 2));
      } else {
        out(renderJourney(journey, { ...links, spans, spansError, color: colorEnabled() }));
      }
    });
  });

  const slow = withWindow(
    dbCommand('slow', 'frames whose capture-to-last-stage time reached a threshold, slowest first, with latency percentiles'),
    '1h',
  )
    .option('--threshold <duration>', 'slow means at least this long (500ms, 2s)', '500ms')
    .option('--camera <id>', 'only this camera')
    .option('--limit <n>', 'at most this many frames', '20')
    .option('--json', 'print the report as JSON (shape: SlowReport in src/trace/queries.ts)');
  slow.action(async (flags: Flags) => {
    const w = timeWindow(flags);
    const thresholdMs = parseDuration(String(flags.threshold), '--threshold');
    await withPool(flags, async (pool) => {
      const r = await findSlowFrames(pool, { ...w, thresholdMs, cameraId: optional(flags.camera), limit: int(flags.limit, '--limit') });
      out(flags.json ? JSON.stringify(r, null, 2) : renderSlow(r, { color: colorEnabled() }));
    });
  });

  const failures = withWindow(dbCommand('failures', 'failed stages and dropped frames, grouped by stage and error type'), '24h')
    .option('--camera <id>', 'only this camera')
    .option('--limit <n>', 'at most this many groups', '50')
    .option('--json', 'print the report as JSON (shape: FailureReport in src/trace/queries.ts)');
  failures.action(async (flags: Flags) => {
    const w = timeWindow(flags);
    await withPool(flags, async (pool) => {
      const r = await findFailures(pool, { ...w, cameraId: optional(flags.camera), limit: int(flags.limit, '--limit') });
      out(flags.json ? JSON.stringify(r, null, 2) : renderFailures(r, { color: colorEnabled() }));
    });
  });

  const search = withWindow(dbCommand('search', 'frames by camera, state and time, newest first'), '1h')
    .option('--camera <id>', 'only this camera')
    .addOption(
      new Option('--state <state>', 'only frames in this state').choices([
        'captured',
        'queued',
        'processing',
        'completed',
        'failed',
        'dropped',
      ]),
    )
    .option('--limit <n>', 'at most this many frames', '50')
    .option('--json', 'print {window, frames} as JSON (FrameBrief in src/trace/queries.ts)');
  search.action(async (flags: Flags) => {
    const w = timeWindow(flags);
    const state = flags.state === undefined ? undefined : parseFrameState(String(flags.state));
    await withPool(flags, async (pool) => {
      const r = await searchFrames(pool, { ...w, cameraId: optional(flags.camera), state, limit: int(flags.limit, '--limit') });
      out(flags.json ? JSON.stringify(r, null, 2) : renderSearch(r, { color: colorEnabled() }));
    });
  });

  const camera = withWindow(dbCommand('camera', 'camera lifecycle events (online, offline with reason, frozen) and offline periods'), '24h')
    .argument('[cameraId]', 'the camera (default: every camera)')
    .option('--limit <n>', 'at most this many events (the latest)', '200')
    .option('--json', 'print the report as JSON (shape: CameraReport in src/trace/queries.ts)');
  camera.action(async (cameraId: string | undefined, flags: Flags) => {
    const w = timeWindow(flags);
    await withPool(flags, async (pool) => {
      const r = await findCameraEvents(pool, { ...w, cameraId, limit: int(flags.limit, '--limit') });
      out(flags.json ? JSON.stringify(r, null, 2) : renderCamera(r, { color: colorEnabled() }));
    });
  });

  for (const c of [find, slow, failures, search, camera]) trace.addCommand(c);
  return trace;
}

type Flags = Record<string, unknown>;

/** --since/--until, read by timeWindow(). */
function withWindow(cmd: Command, defaultSince: string): Command {
  return cmd
    .option('--since <when>', `window start: a duration ago (e.g. ${defaultSince}) or an ISO time`, defaultSince)
    .option('--until <when>', 'window end: a duration ago or an ISO time (default now)');
}

function dbCommand(name: string, description: string): Command {
  const cmd = new Command(name).description(description);
  withConfigOptions(cmd, { only: ['databaseUrl', 'dbSchema', 'logLevel', 'dataDir'] });
  return cmd;
}

function withTraceBackendOptions(cmd: Command): Command {
  return cmd
    .option(
      '--trace-ui-url <url>',
      'trace UI base URL: Jaeger UI, or Grafana for Tempo; {traceId}/{frameId}/{traceql} make it a template (env DETEKTR_TRACE_UI_URL)',
    )
    .option('--trace-backend <kind>', 'jaeger | tempo (env DETEKTR_TRACE_BACKEND; default jaeger)')
    .option(
      '--trace-api-url <url>',
      'where --spans fetches spans: Jaeger query (default: the UI URL) or Tempo HTTP API, e.g. http://tempo:3200 (env DETEKTR_TRACE_API_URL)',
    )
    .option('--tempo-datasource <uid>', 'Grafana data source uid of Tempo, for links (env DETEKTR_TEMPO_DATASOURCE; default tempo)');
}

/** Backend settings: flags > environment (> the config file, for traceUiUrl). */
function backendConfig(flags: Flags): TraceBackendConfig {
  const { config } = resolveConfig(flags, { traceUiUrl: flags.traceUiUrl });
  const env = process.env;
  const apiUrl = optional(flags.traceApiUrl) ?? optional(env.DETEKTR_TRACE_API_URL);
  if (apiUrl !== undefined) {
    try {
      new URL(apiUrl);
    } catch {
      throw new InvalidInputError(`trace API URL "${redactValue(apiUrl)}" is not a valid URL`);
    }
  }
  return {
    kind: parseBackendKind(optional(flags.traceBackend) ?? optional(env.DETEKTR_TRACE_BACKEND)),
    uiUrl: config.traceUiUrl,
    apiUrl,
    tempoDatasource: optional(flags.tempoDatasource) ?? optional(env.DETEKTR_TEMPO_DATASOURCE),
  };
}

async function withPool(flags: Flags, fn: (pool: pg.Pool, schema: string) => Promise<void>): Promise<void> {
  const loaded = resolveConfig(flags);
  const { config } = loaded;
  // No DATABASE_URL: a running `detektr run`'s database (run.json), or its embedded files in --data-dir.
  const db = await resolveBackends(loaded, { requireDatabase: true });
  const pool = createPool(db.databaseUrl, { schema: config.dbSchema, max: 1 });
  try {
    await fn(pool, config.dbSchema);
  } catch (err) {
    // 42P01 undefined_table: the schema was never migrated (or is another one than meant).
    if ((err as { code?: string }).code === '42P01') {
      throw new DetektrError(
        `schema "${config.dbSchema}" has no detektr tables: run \`detektr migrate\` first, or pick the schema with --db-schema / DETEKTR_DB_SCHEMA`,
        { cause: err },
      );
    }
    throw err;
  } finally {
    await pool.end();
    await db.close();
  }
}

/** "1h" (that long ago), or an ISO-8601 time. */
export function parseWhen(value: string, flag: string, now = Date.now()): number {
  const v = value.trim();
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (Number.isNaN(t)) throw new InvalidInputError(`${flag}: "${value}" is not a valid ISO time`);
    return t;
  }
  return now - parseDuration(v, flag);
}

function timeWindow(flags: Flags): { sinceMs: number; untilMs?: number } {
  const now = Date.now();
  const sinceMs = parseWhen(String(flags.since), '--since', now);
  const untilMs = flags.until === undefined ? now : parseWhen(String(flags.until), '--until', now);
  if (sinceMs >= untilMs) throw new InvalidInputError('--since must lie before --until');
  return { sinceMs, untilMs };
}

function int(value: unknown, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 10_000)
    throw new InvalidInputError(`${flag}: "${String(value)}" must be an integer between 1 and 10000`);
  return n;
}

function optional(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}
