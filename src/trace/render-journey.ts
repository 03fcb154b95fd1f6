import Table from 'cli-table3';
import type { Journey, JourneyEvent, JourneyStage } from './journey.js';

export interface RenderOptions {
  /**
   * Trace UI base URL. "{traceId}" in it is replaced by the trace id (Tempo/Grafana style
   * links); otherwise "/trace/<traceId>" is appended (Jaeger UI).
   */
  traceUrl?: string;
  color?: boolean;
}

const ANSI = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, gray: 90, bold: 1 } as const;
type Paint = (style: keyof typeof ANSI, text: string) => string;

const STATE_STYLE: Record<string, keyof typeof ANSI> = {
  completed: 'green',
  failed: 'red',
  dropped: 'magenta',
  processing: 'yellow',
  queued: 'cyan',
  captured: 'gray',
};

const BAR_WIDTH = 20;

/** The human view of `detektr trace find`: header, events, stages with a timeline bar. */
export function renderJourney(j: Journey, opts: RenderOptions = {}): string {
  const paint: Paint = opts.color ? (style, text) => `\x1b[${ANSI[style]}m${text}\x1b[0m` : (_style, text) => text;
  const state = (s: string) => paint(STATE_STYLE[s] ?? 'gray', s);
  // compact: no rule between rows, so a long journey stays on one screen.
  const tableStyle = opts.color
    ? { head: ['cyan'], border: ['gray'], compact: true }
    : { head: [], border: [], compact: true };

  const header = new Table({ style: tableStyle });
  header.push(
    { frame: j.frameId },
    { camera: j.cameraId },
    { state: j.droppedReason ? `${state(j.state)} (${j.droppedReason})` : state(j.state) },
    { 'captured at': j.capturedAt },
    { 'total ms': j.totalMs === null ? '-' : ms(j.totalMs) },
    { 'trace id': j.traceId ?? '-' },
  );
  const link = traceLink(j.traceId, opts.traceUrl);
  if (link) header.push({ 'trace link': link });
  if (j.width !== null && j.height !== null) {
    header.push({ image: `${j.width}x${j.height} ${j.format ?? ''} ${j.sizeBytes === null ? '' : `${j.sizeBytes} B`}`.trim() });
  }

  const events = new Table({ head: ['+ms', 'event', 'source', 'processor', 'detail'], style: tableStyle });
  for (const e of j.events) {
    events.push([{ content: ms(e.offsetMs), hAlign: 'right' }, eventType(e, paint), e.source, e.processorId ?? '', detail(e)]);
  }

  const parts = [header.toString(), 'events', events.toString()];
  if (j.stages.length > 0) {
    const scale = timelineScale(j);
    const stages = new Table({
      head: ['processor', 'capability', 'state', 'attempts', 'wait ms', 'run ms', 'timeline'],
      style: tableStyle,
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
  if (j.anomalies.length > 0) {
    parts.push(paint('yellow', 'anomalies'), ...j.anomalies.map((a) => `  ${paint('yellow', '!')} ${a}`));
  }
  return parts.join('\n');
}

export function traceLink(traceId: string | null, traceUrl: string | undefined): string | undefined {
  if (!traceId || !traceUrl) return undefined;
  if (traceUrl.includes('{traceId}')) return traceUrl.replaceAll('{traceId}', traceId);
  return `${traceUrl.replace(/\/+$/, '')}/trace/${traceId}`;
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
  const col = (iso: string | null) => (iso === null ? null : Math.min(BAR_WIDTH, Math.max(0, Math.round(((Date.parse(iso) - t0) / scale) * BAR_WIDTH))));
  const q = col(s.queuedAt) ?? col(s.startedAt) ?? 0;
  const st = col(s.startedAt);
  const end = col(s.finishedAt) ?? (st === null ? q : BAR_WIDTH);
  const wait = st === null ? Math.max(0, end - q) : Math.max(0, st - q);
  const run = st === null ? 0 : Math.max(1, end - st);
  const body = paint(STATE_STYLE[s.state] ?? 'gray', '█'.repeat(run));
  return ' '.repeat(q) + '·'.repeat(wait) + body + ' '.repeat(Math.max(0, BAR_WIDTH - q - wait - run));
}
