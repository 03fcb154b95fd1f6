import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/domain/errors.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { newEventId } from '../../src/domain/frame-id.js';
import { writeEvents } from '../../src/store/event-writer.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';
import { findJourney, type Journey } from '../../src/trace/journey.js';
import { renderJourney } from '../../src/trace/render-journey.js';
import { traceLinks } from '../../src/trace/trace-backend.js';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `t_${randomBytes(5).toString('hex')}`;
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
let pool: pg.Pool;

beforeAll(async () => {
  pool = createPool(DATABASE_URL, { schema });
  await migrate({ pool, schema });
});
afterAll(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await pool.end();
});

/** Events of one frame captured at t0; `steps` are [type, +ms, extra] in any order. */
function frame(steps: Array<[LifecycleEvent['type'], number, Partial<LifecycleEvent>?]>, t0 = Date.now() - 10_000): LifecycleEvent[] {
  const frameId = ulid(t0);
  return steps.map(([type, dt, extra]) => ({
    eventId: ulid(t0 + dt),
    type,
    frameId,
    cameraId: 'cam07',
    at: t0 + dt,
    source: type === 'frame.captured' ? 'capture' : type.startsWith('processing') ? 'process' : 'buffer',
    traceId: TRACE,
    ...extra,
  }));
}

const motion = { processorId: 'motion-1', capability: 'motion' };
const sample = { processorId: 'sample-1', capability: 'sample' };

describe('findJourney', () => {
  let events: LifecycleEvent[];
  let journey: Journey | null;

  beforeAll(async () => {
    events = frame([
      [
        'frame.captured',
        0,
        { spanId: '00f067aa0ba902b7', data: { width: 640, height: 480, format: 'jpeg', sizeBytes: 40960, priority: 3 } },
      ],
      ['frame.queued', 4, motion],
      ['frame.queued', 5, sample],
      ['processing.started', 12, { ...motion, attempt: 1 }],
      ['processing.started', 9, { ...sample, attempt: 1 }],
      ['processing.completed', 20, { ...sample, attempt: 1, durationMs: 11 }],
      ['processing.failed', 57, { ...motion, attempt: 1, durationMs: 45, error: 'model not loaded' }],
    ]);
    // Arrival order is not journey order.
    await writeEvents(pool, events.slice(4));
    await writeEvents(pool, events.slice(0, 4));
    journey = await findJourney(pool, events[0].frameId);
  });

  it('tells the frame facts', () => {
    expect(journey).toMatchObject({
      frameId: events[0].frameId,
      cameraId: 'cam07',
      capturedAt: new Date(events[0].at).toISOString(),
      state: 'failed',
      traceId: TRACE,
      width: 640,
      height: 480,
      format: 'jpeg',
      sizeBytes: 40960,
      totalMs: 57,
      anomalies: [],
      sampled: true,
      cameraEvents: [],
      cameraWindowMs: 60_000,
    });
    expect(journey).not.toHaveProperty('droppedReason');
  });

  it('lists events by time with offsets from capture', () => {
    expect(journey!.events.map((e) => [e.offsetMs, e.type, e.processorId ?? null])).toEqual([
      [0, 'frame.captured', null],
      [4, 'frame.queued', 'motion-1'],
      [5, 'frame.queued', 'sample-1'],
      [9, 'processing.started', 'sample-1'],
      [12, 'processing.started', 'motion-1'],
      [20, 'processing.completed', 'sample-1'],
      [57, 'processing.failed', 'motion-1'],
    ]);
    expect(journey!.events[0]).toEqual({
      eventId: events[0].eventId,
      type: 'frame.captured',
      at: new Date(events[0].at).toISOString(),
      offsetMs: 0,
      source: 'capture',
      spanId: '00f067aa0ba902b7',
    });
    expect(journey!.events[6]).toMatchObject({ attempt: 1, durationMs: 45, error: 'model not loaded', capability: 'motion' });
  });

  it('sums up each stage', () => {
    expect(journey!.stages).toEqual([
      {
        processorId: 'motion-1',
        capability: 'motion',
        state: 'failed',
        attempts: 1,
        queuedAt: new Date(events[0].at + 4).toISOString(),
        startedAt: new Date(events[0].at + 12).toISOString(),
        finishedAt: new Date(events[0].at + 57).toISOString(),
        durationMs: 45,
        waitMs: 8,
        error: 'model not loaded',
      },
      {
        processorId: 'sample-1',
        capability: 'sample',
        state: 'completed',
        attempts: 1,
        queuedAt: new Date(events[0].at + 5).toISOString(),
        startedAt: new Date(events[0].at + 9).toISOString(),
        finishedAt: new Date(events[0].at + 20).toISOString(),
        durationMs: 11,
        waitMs: 4,
      },
    ]);
  });

  it('is JSON as documented', () => {
    const back = JSON.parse(JSON.stringify(journey));
    expect(back).toEqual(journey);
  });

  it('renders the key facts', () => {
    const text = renderJourney(
      journey!,
      traceLinks(
        { kind: 'jaeger', uiUrl: 'http://jaeger:16686/' },
        { traceId: TRACE, frameId: journey!.frameId, capturedAtMs: events[0].at },
      ),
    );
    for (const fact of [
      events[0].frameId,
      'cam07',
      'failed',
      'total ms',
      '57',
      TRACE,
      `http://jaeger:16686/trace/${TRACE}`,
      'processing.completed',
      'motion-1',
      'sample-1',
      'model not loaded',
      '640x480 jpeg',
      '█',
    ]) {
      expect(text).toContain(fact);
    }
    const ESC = '\u001b[';
    expect(text).not.toContain(ESC);
    expect(renderJourney(journey!, { color: true })).toContain(`${ESC}31mfailed`);
    const templated = traceLinks(
      { kind: 'tempo', uiUrl: 'https://grafana/explore?trace={traceId}' },
      { traceId: TRACE, frameId: journey!.frameId, capturedAtMs: events[0].at },
    );
    expect(renderJourney(journey!, templated)).toContain(`https://grafana/explore?trace=${TRACE}`);
    expect(renderJourney({ ...journey!, sampled: false })).toContain('not sampled');
  });

  it('returns null for a frame it does not know', async () => {
    expect(await findJourney(pool, ulid())).toBeNull();
  });

  it('rejects what is not a frame id', async () => {
    await expect(findJourney(pool, 'frame-42')).rejects.toThrow(InvalidInputError);
  });

  it('accepts a lowercase frame id', async () => {
    expect((await findJourney(pool, events[0].frameId.toLowerCase()))?.frameId).toBe(events[0].frameId);
  });

  it('reports invalid transitions as anomalies', async () => {
    const bad = frame([
      ['frame.captured', 0],
      ['frame.queued', 2, motion],
      ['processing.completed', 30, { ...motion, durationMs: 20 }],
      ['processing.started', 40, motion],
      ['processing.started', 5, sample],
    ]);
    await writeEvents(pool, bad);
    const j = (await findJourney(pool, bad[0].frameId))!;
    expect(j.anomalies).toEqual([
      `processing.started ${bad[4].eventId} (sample-1) at +5ms: a stage must start queued, not processing`,
      `processing.completed ${bad[2].eventId} (motion-1) at +30ms: invalid stage transition queued -> completed`,
      `processing.started ${bad[3].eventId} (motion-1) at +40ms: invalid stage transition completed -> processing`,
    ]);
    expect(renderJourney(j, {})).toContain('anomalies');
  });

  it('shows no anomaly for a frame re-routed after its processor started it, nor for an expired payload', async () => {
    const face = { processorId: 'face-2', capability: 'motion' };
    // One buffer process emits both re-route events in the same millisecond, with ids in that order.
    const t0 = Date.now() - 10_000;
    const [queuedId, droppedId] = [newEventId(t0 + 30), newEventId(t0 + 30)];
    const rerouted = frame(
      [
        ['frame.captured', 0],
        ['frame.queued', 2, motion],
        ['processing.started', 4, { ...motion, attempt: 1 }],
        ['frame.queued', 30, { ...face, attempt: 1, eventId: queuedId }],
        ['frame.dropped', 30, { ...motion, eventId: droppedId, reason: 'rerouted to face-2: processor motion-1 is gone' }],
        ['processing.started', 33, { ...face, attempt: 1 }],
        ['processing.completed', 40, { ...face, attempt: 1, durationMs: 7 }],
      ],
      t0,
    );
    const expired = frame([
      ['frame.captured', 0],
      ['frame.queued', 2, motion],
      ['processing.started', 4, { ...motion, attempt: 1 }],
      ['frame.dropped', 5, { ...motion, attempt: 1, reason: 'payload expired before processing (payload TTL): p:frame:x' }],
    ]);
    await writeEvents(pool, [...rerouted, ...expired]);
    const r = (await findJourney(pool, rerouted[0].frameId))!;
    expect(r).toMatchObject({ state: 'completed', anomalies: [] });
    expect(r.stages.map((s) => [s.processorId, s.state])).toEqual([
      ['motion-1', 'dropped'],
      ['face-2', 'completed'],
    ]);
    const x = (await findJourney(pool, expired[0].frameId))!;
    expect(x).toMatchObject({ state: 'dropped', droppedReason: expect.stringContaining('payload expired'), anomalies: [] });
  });

  it('reports events without a capture and a dropped frame with its reason', async () => {
    const dropped = frame([
      ['frame.queued', 2, motion],
      ['frame.dropped', 3, { reason: 'backpressure: shed', source: 'buffer' }],
    ]);
    await writeEvents(pool, dropped);
    const j = (await findJourney(pool, dropped[0].frameId))!;
    expect(j).toMatchObject({ state: 'dropped', droppedReason: 'backpressure: shed', totalMs: 3, width: null });
    expect(j.anomalies).toEqual([
      `frame.queued ${dropped[0].eventId} (motion-1) at +2ms: before frame.captured`,
      `frame.dropped ${dropped[1].eventId} at +3ms: before frame.captured`,
      'no frame.captured event',
    ]);
    expect(renderJourney(j, {})).toContain('backpressure: shed');
  });
});
