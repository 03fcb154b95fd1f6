import Table from 'cli-table3';
import type { CameraReport, FailureReport, FrameBrief, SlowReport } from './queries.js';
import { painter, type Paint, type Style } from '../terminal/colors.js';
import { STATE_STYLE, tableStyle } from './render-style.js';

/** Human views of `detektr trace slow|failures|search|camera` (the JSON is the report itself). */

function ms(v: number | null): string {
  if (v === null) return '';
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function time(iso: string): string {
  return iso.replace('T', ' ').replace('Z', '');
}

function windowLine(w: { since: string; until: string }, extra = ''): string {
  return `${time(w.since)} .. ${time(w.until)} UTC${extra}`;
}

/** "motion 12+35ms, sample failed: boom" */
function stagesText(f: FrameBrief, paint: Paint): string {
  return f.stages
    .map((s) => {
      const timing = s.durationMs === null ? '' : ` ${s.waitMs === null ? '' : `${ms(s.waitMs)}+`}${ms(s.durationMs)}ms`;
      const state = s.state === 'completed' ? '' : ` ${paint(STATE_STYLE[s.state] ?? 'gray', s.state)}`;
      return `${s.processorId}${state}${timing}${s.error ? `: ${s.error}` : ''}`;
    })
    .join(', ');
}

function framesTable(frames: FrameBrief[], color?: boolean): string {
  const paint = painter(color);
  const t = new Table({
    head: ['frame', 'camera', 'captured at (UTC)', 'state', 'total ms', 'stages (wait+run)'],
    style: tableStyle(color),
  });
  for (const f of frames) {
    const state = paint(STATE_STYLE[f.state] ?? 'gray', f.state) + (f.droppedReason ? ` (${f.droppedReason})` : '');
    t.push([f.frameId, f.cameraId, time(f.capturedAt), state, { content: ms(f.totalMs), hAlign: 'right' }, stagesText(f, paint)]);
  }
  return t.toString();
}

export function renderSlow(r: SlowReport, opts: { color?: boolean } = {}): string {
  const head = [
    `slow frames (>= ${r.thresholdMs} ms, capture to last stage end)${r.cameraId ? ` of camera ${r.cameraId}` : ''}, ${windowLine(r.window)}`,
    `${r.slow} of ${r.finished} finished frames; latency p50 ${ms(r.p50Ms) || '-'} ms, p95 ${ms(r.p95Ms) || '-'} ms, p99 ${ms(r.p99Ms) || '-'} ms`,
  ];
  if (r.frames.length === 0) return [...head, 'no slow frames'].join('\n');
  const more = r.slow > r.frames.length ? `(the ${r.frames.length} slowest shown; --limit for more)` : '';
  return [...head, framesTable(r.frames, opts.color), more].filter(Boolean).join('\n');
}

export function renderSearch(
  r: { window: { since: string; until: string }; frames: FrameBrief[] },
  opts: { color?: boolean; limit?: number } = {},
): string {
  const head = `${r.frames.length} frame(s), newest first, ${windowLine(r.window)}`;
  if (r.frames.length === 0) return `${head}\nno frames match`;
  return `${head}\n${framesTable(r.frames, opts.color)}`;
}

export function renderFailures(r: FailureReport, opts: { color?: boolean } = {}): string {
  const paint = painter(opts.color);
  const head = `${r.total} failure event(s)${r.cameraId ? ` of camera ${r.cameraId}` : ''}, ${windowLine(r.window)}, by stage and error type`;
  if (r.groups.length === 0) return `${head}\nno failed stages and no dropped frames`;
  const t = new Table({
    head: ['stage', 'what', 'error type', 'count', 'frames', 'cameras', 'last seen (UTC)', 'example frame', 'sample message'],
    style: tableStyle(opts.color),
  });
  for (const g of r.groups) {
    t.push([
      g.processorId ?? '(before routing)',
      paint(g.type === 'processing.failed' ? 'red' : 'magenta', g.type === 'processing.failed' ? 'failed' : 'dropped'),
      g.errorType,
      { content: g.count, hAlign: 'right' },
      { content: g.frames, hAlign: 'right' },
      g.cameras.length > 3 ? `${g.cameras.slice(0, 3).join(',')},+${g.cameras.length - 3}` : g.cameras.join(','),
      time(g.lastAt),
      g.exampleFrameIds[0] ?? '',
      g.sampleMessage.length > 60 ? `${g.sampleMessage.slice(0, 57)}...` : g.sampleMessage,
    ]);
  }
  return `${head}\n${t.toString()}`;
}

export function renderCamera(r: CameraReport, opts: { color?: boolean } = {}): string {
  const paint = painter(opts.color);
  const head = `camera events${r.cameraId ? ` of ${r.cameraId}` : ''}, ${windowLine(r.window)}`;
  if (r.events.length === 0) return `${head}\nno camera events (capture emits camera.online / camera.offline / camera.frozen)`;
  const t = new Table({ head: ['at (UTC)', 'camera', 'event', 'source', 'reason'], style: tableStyle(opts.color) });
  for (const e of r.events) {
    const style: Style = e.type === 'camera.online' ? 'green' : e.type === 'camera.offline' ? 'red' : 'yellow';
    t.push([time(e.at), e.cameraId, paint(style, e.type), e.source, e.reason ?? '']);
  }
  const parts = [head, t.toString()];
  if (r.offline.length) {
    parts.push('offline periods');
    for (const p of r.offline) {
      const span =
        p.to === null ? `${time(p.from)} .. (still offline)` : `${time(p.from)} .. ${time(p.to)} (${(p.durationMs! / 1000).toFixed(1)} s)`;
      parts.push(`  ${p.cameraId}: ${span}${p.reason ? `, ${p.reason}` : ''}`);
    }
  }
  return parts.join('\n');
}
