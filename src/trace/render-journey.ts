import Table from 'cli-table3';
import type { Journey, JourneyEvent, JourneyStage } from './journey.js';
import type { SpanSummary } from './trace-backend.js';
import { painter, type Paint } from '../terminal/colors.js';
import { STATE_STYLE, tableStyle } from './render-style.js';

export interface RenderOptions {
  /** Link to the frame's trace in the trace UI (see trace-backend.ts traceLinks). */
  traceUrl?: string;
  /** Link to a search for the frame's spans (Jaeger tag search, Tempo TraceQL). */
  traceSearchUrl?: string;
  /** `trace find --spans`: the spans fetched from the backend, or why they could not be. */
  spans?: SpanSummary[];
  spansError?: string;
  color?: boolean;
}

const BAR_WIDTH = 20;

/** The human view of `detektr trace find`: header, events, stages with a timeline bar. */
export function renderJourney(j: Journey, opts: RenderOptions = {}): string {
  const paint = painter(opts.color);
  const state = (s: string) => paint(STATE_STYLE[s] ?? 'gray', s);
  const style = tableStyle(opts.color);

  const header = new Table({ style });
  header.push(
    { frame: j.frameId },
    { camera: j.cameraId },
    { state: j.droppedReason ? `${state(j.state)} (${j.droppedReason})` : state(j.state) },
    { 'captured at': j.capturedAt },
    { 'total ms': j.totalMs === null ? '-' : ms(j.totalMs) },
    {
      'trace id':
        j.traceId === null
          ? '-'
          : j.sampled === false
            ? `${j.traceId} (not sampled: no spans exported; this journey is complete anyway)`
            : j.traceId,
    },
  );
  if (opts.traceUrl) header.push({ 'trace link': opts.traceUrl });
  if (opts.traceSearchUrl) header.push({ 'frame search': opts.traceSearchUrl });
  if (j.width !== null && j.height !== null) {
    header.push({ image: `${j.width}x${j.height} ${j.format ?? ''} ${j.sizeBytes === null ? '' : `${j.sizeBytes} B`}`.trim() });
  }

  const events = new Table({ head: ['+ms', 'event', 'source', 'processor', 'detail'], style });
  for (const e of j.events) {
    events.push([{ content: ms(e.offsetMs), hAlign: 'right' }, eventType(e, paint), e.source, e.processorId ?? '', detail(e)]);
  }

  const parts = [header.toString(), 'events', events.toString()];
  if (j.stages.length > 0) {
    const scale = timelineScale(j);
    const stages = new Table({
      head: ['processor', 'capability', 'state', 'attempts', 'wait ms', 'run ms', 'timeline'],
      style,
    });
    for (const s of j.stages) {
      stages.push([
        s.processorId,
        s.capability ?? '',
        s.error ? `${state(s.state)}: ${s.error}` : state(s.state),
        { content: s.attempts, hAlign: 'right' },
        { content: s.waitMs === null ? '' : ms(s.waitMs), hAlign: 'right' },
        { content: s.durationMs === null ? '' : ms(s.durationMs), hAlign: 'right' },
        bar(s, j.capturedAt, scale, paint),
      ]);
    }
    parts.push('stages', stages.toString());
  }
  if (j.cameraEvents.length > 0) {
    const cams = new Table({
      head: ['+ms', `camera ${j.cameraId} (within ${Math.round(j.cameraWindowMs / 1000)} s)`, 'source', 'reason'],
      style,
    });
    for (const c of j.cameraEvents) {
      const style = c.type === 'camera.online' ? 'green' : c.type === 'camera.offline' ? 'red' : 'yellow';
      cams.push([{ content: signedMs(c.offsetMs), hAlign: 'right' }, paint(style, c.type), c.source, c.reason ?? '']);
    }
    parts.push('camera events', cams.toString());
  }
  if (opts.spans) parts.push(...renderSpans(opts.spans, Date.parse(j.capturedAt), paint));
  else if (opts.spansError) parts.push(paint('yellow', `spans: ${opts.spansError}`));
  if (j.anomalies.length > 0) {
    parts.push(paint('yellow', 'anomalies'), ...j.anomalies.map((a) => `  ${paint('yellow', '!')} ${a}`));
  }
  return parts.join('\n');
}

function signedMs(v: number): string {
  return v > 0 ? `+${ms(v)}` : ms(v);
}

/** The span tree (children under their parent, by start), with a bar on the frame's timeline. */
function renderSpans(spans: SpanSummary[], t0: number, paint: Paint): string[] {
  if (spans.length === 0) return [paint('gray', 'spans: the backend has no spans for this trace (not sampled, or expired)')];
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string | undefined, SpanSummary[]>();
  for (const s of spans) {
    const parent = s.parentSpanId && ids.has(s.parentSpanId) ? s.parentSpanId : undefined;
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const start = Math.min(t0, ...spans.map((s) => s.startMs));
  const end = Math.max(...spans.map((s) => s.startMs + s.durationMs));
  const scale = Math.max(end - start, 1);
  const table = new Table({ head: ['+ms', 'span', 'service', 'ms', 'timeline'], style: { head: [], border: [], compact: true } });
  const walk = (parent: string | undefined, depth: number) => {
    for (const s of children.get(parent) ?? []) {
      const from = Math.round(((s.startMs - start) / scale) * BAR_WIDTH);
      const width = Math.max(1, Math.round((s.durationMs / scale) * BAR_WIDTH));
      const bar =
        ' '.repeat(Math.min(BAR_WIDTH, from)) +
        paint(s.status === 'error' ? 'red' : 'blue', '█'.repeat(Math.min(width, BAR_WIDTH - Math.min(BAR_WIDTH - 1, from))));
      table.push([
        { content: ms(Math.round((s.startMs - t0) * 10) / 10), hAlign: 'right' },
        `${'  '.repeat(depth)}${s.status === 'error' ? paint('red', s.name) : s.name}`,
        s.service,
        { content: ms(Math.round(s.durationMs * 10) / 10), hAlign: 'right' },
        bar,
      ]);
      walk(s.spanId, depth + 1);
    }
  };
  walk(undefined, 0);
  return [`spans (${spans.length})`, table.toString()];
}

function eventType(e: JourneyEvent, paint: Paint): string {
  if (e.type === 'processing.failed') return paint('red', e.type);
  if (e.type === 'frame.dropped') return paint('magenta', e.type);
  return e.type;
}

function detail(e: JourneyEvent): string {
  const bits: string[] = [];
  if (e.capability) bits.push(e.capability);
  if (e.attempt !== undefined && e.attempt > 1) bits.push(`attempt ${e.attempt}`);
  if (e.durationMs !== undefined) bits.push(`${ms(e.durationMs)} ms`);
  if (e.reason) bits.push(`reason: ${e.reason}`);
  if (e.error) bits.push(`error: ${e.error}`);
  return bits.join(', ');
}

function ms(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/** Milliseconds after capture that the timeline spans: the last thing that happened. */
function timelineScale(j: Journey): number {
  const last = Math.max(0, j.totalMs ?? 0, ...j.events.map((e) => e.offsetMs));
  return last > 0 ? last : 1;
}

/** Capture at the left edge: blank until queued, '·' while waiting, '█' while running. */
function bar(s: JourneyStage, capturedAt: string, scale: number, paint: Paint): string {
  const t0 = Date.parse(capturedAt);
  const col = (iso: string | null) =>
    iso === null ? null : Math.min(BAR_WIDTH, Math.max(0, Math.round(((Date.parse(iso) - t0) / scale) * BAR_WIDTH)));
  const q = col(s.queuedAt) ?? col(s.startedAt) ?? 0;
  const st = col(s.startedAt);
  const end = col(s.finishedAt) ?? (st === null ? q : BAR_WIDTH);
  const wait = st === null ? Math.max(0, end - q) : Math.max(0, st - q);
  const run = st === null ? 0 : Math.max(1, end - st);
  const body = paint(STATE_STYLE[s.state] ?? 'gray', '█'.repeat(run));
  return ' '.repeat(q) + '·'.repeat(wait) + body + ' '.repeat(Math.max(0, BAR_WIDTH - q - wait - run));
}
