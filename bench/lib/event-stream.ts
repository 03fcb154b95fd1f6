import { ulid } from 'ulid';
import type { LifecycleEvent } from '../../src/domain/events.js';

export interface StreamOptions {
  /** Frames to generate. */
  frames: number;
  cameras?: number;
  /** Frames per second per camera (sets how journeys interleave). */
  fps?: number;
  /** Capture time of the first frame (ms). */
  t0?: number;
  /** Deterministic pseudo-random seed. */
  seed?: number;
}

/**
 * A realistic events stream, in arrival (time) order: per frame frame.captured, then per
 * processor frame.queued +2 ms, processing.started +5..15 ms, processing.completed after
 * 10..60 ms; 10% of frames also go to a second processor, 1% of stages fail and 0.5% of
 * frames are dropped by backpressure. About 4.4 events per frame.
 */
export function eventStream(opts: StreamOptions): LifecycleEvent[] {
  const cameras = opts.cameras ?? 8;
  const fps = opts.fps ?? 30;
  const t0 = opts.t0 ?? Date.now() - 3_600_000;
  let seed = opts.seed ?? 1;
  const rnd = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const hex = (n: number) => {
    let s = '';
    for (let i = 0; i < n; i++) s += Math.floor(rnd() * 16).toString(16);
    return s;
  };
  const events: LifecycleEvent[] = [];
  const step = 1000 / (fps * cameras);
  for (let i = 0; i < opts.frames; i++) {
    const at = Math.round(t0 + i * step);
    const frameId = ulid(at);
    const cameraId = `cam${String(i % cameras).padStart(2, '0')}`;
    const traceId = hex(32);
    const ev = (type: LifecycleEvent['type'], t: number, extra: Partial<LifecycleEvent> = {}): void => {
      events.push({
        eventId: ulid(t),
        type,
        frameId,
        cameraId,
        at: t,
        source: type === 'frame.captured' ? 'capture' : type.startsWith('processing') ? 'process' : 'buffer',
        traceId,
        spanId: hex(16),
        ...extra,
      });
    };
    ev('frame.captured', at, {
      data: { width: 1280, height: 720, format: 'jpeg', sizeBytes: 30_000 + Math.floor(rnd() * 5000), priority: 5 },
    });
    if (rnd() < 0.005) {
      ev('frame.dropped', at + 1, { reason: 'backpressure: shed' });
      continue;
    }
    const processors = rnd() < 0.1 ? ['motion', 'sample'] : ['motion'];
    for (const p of processors) {
      const q = at + 2;
      const s = q + 5 + Math.floor(rnd() * 10);
      const d = 10 + Math.floor(rnd() * 50);
      const extra = { processorId: `${p}-1`, capability: p };
      ev('frame.queued', q, extra);
      ev('processing.started', s, { ...extra, attempt: 1 });
      if (rnd() < 0.01) ev('processing.failed', s + d, { ...extra, attempt: 1, durationMs: d, error: 'TimeoutError: frame timeout' });
      else ev('processing.completed', s + d, { ...extra, attempt: 1, durationMs: d - 0.5 });
    }
  }
  return events.sort((a, b) => a.at - b.at || (a.eventId < b.eventId ? -1 : 1));
}
