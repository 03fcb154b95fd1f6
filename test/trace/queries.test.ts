import type pg from 'pg';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CameraEvent } from '../../src/domain/camera-events.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { writeBatch } from '../../src/store/event-writer.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';
import { findJourney } from '../../src/trace/journey.js';
import { findCameraEvents, findFailures, findSlowFrames, offlinePeriods, searchFrames } from '../../src/trace/queries.js';
import { renderJourney } from '../../src/trace/render-journey.js';
import { renderCamera, renderFailures, renderSearch, renderSlow } from '../../src/trace/render-lists.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';

const schema = uniqueSchema('queries');
let pool: pg.Pool;
const NOW = Date.now();
const T0 = NOW - 30 * 60_000; // frames in the last half hour
const OLD = NOW - 3 * 3_600_000; // and some three hours ago

type Outcome = { total: number; fail?: string; drop?: string; dropStage?: boolean; inFlight?: boolean };

/** One frame at `at` on `camera`, processed by motion-1 for `total` ms (wait 5 ms). */
function frame(at: number, camera: string, o: Outcome): LifecycleEvent[] {
  const frameId = ulid(at);
  const base = { frameId, cameraId: camera, traceId: at.toString(16).padStart(32, '0') };
  const p = { processorId: 'motion-1', capability: 'motion' };
  const ev = (type: LifecycleEvent['type'], dt: number, extra: Partial<LifecycleEvent> = {}): LifecycleEvent => ({
    ...base,
    eventId: ulid(at + dt),
    type,
    at: at + dt,
    source: type === 'frame.captured' ? 'capture' : type.startsWith('processing') ? 'process' : 'buffer',
    ...extra,
  });
  const out = [ev('frame.captured', 0)];
  if (o.drop && !o.dropStage) return [...out, ev('frame.dropped', 1, { reason: o.drop })];
  out.push(ev('frame.queued', 2, p));
  if (o.drop) return [...out, ev('frame.dropped', 3, { ...p, reason: o.drop })];
  out.push(ev('processing.started', 7, { ...p, attempt: 1 }));
  if (o.inFlight) return out;
  out.push(
    o.fail
      ? ev('processing.failed', o.total, { ...p, attempt: 1, durationMs: o.total - 7, error: o.fail })
      : ev('processing.completed', o.total, { ...p, attempt: 1, durationMs: o.total - 7 }),
  );
  return out;
}

const ids: Record<string, string> = {};

beforeAll(async () => {
  pool = createPool(TEST_DATABASE_URL, { schema });
  await migrate({ pool, schema });
  const events: LifecycleEvent[] = [];
  const add = (name: string, at: number, camera: string, o: Outcome) => {
    const f = frame(at, camera, o);
    ids[name] = f[0].frameId;
    events.push(...f);
  };
  for (let i = 0; i < 40; i++) add(`fast${i}`, T0 + i * 1000, i % 2 ? 'front' : 'back', { total: 40 + i });
  add('slow1', T0 + 100_000, 'front', { total: 900 });
  add('slow2', T0 + 101_000, 'back', { total: 1500 });
  add('slowFailed', T0 + 102_000, 'front', { total: 700, fail: 'TimeoutError: frame timeout after 700 ms' });
  add('failed1', T0 + 103_000, 'front', { total: 60, fail: 'TypeError: cannot read x of undefined' });
  add('failed2', T0 + 104_000, 'back', { total: 61, fail: 'TypeError: cannot read y of undefined' });
  add('dropped1', T0 + 105_000, 'front', { total: 0, drop: 'backpressure: shed' });
  add('dropped2', T0 + 106_000, 'front', { total: 0, drop: 'circuit open', dropStage: true });
  add('stuck', T0 + 107_000, 'front', { total: 0, inFlight: true });
  add('oldSlow', OLD, 'front', { total: 5000 });
  add('oldFailed', OLD + 1000, 'front', { total: 50, fail: 'TimeoutError: frame timeout after 50 ms' });
  const camera: CameraEvent[] = [
    {
      eventId: ulid(T0 + 100_500),
      type: 'camera.offline',
      cameraId: 'front',
      at: T0 + 100_500,
      source: 'capture',
      reason: 'timeout: no frame for 5s',
    },
    { eventId: ulid(T0 + 130_500), type: 'camera.online', cameraId: 'front', at: T0 + 130_500, source: 'capture' },
    {
      eventId: ulid(T0 + 140_000),
      type: 'camera.frozen',
      cameraId: 'back',
      at: T0 + 140_000,
      source: 'capture',
      reason: 'same picture for 10s',
    },
    { eventId: ulid(T0 + 150_000), type: 'camera.offline', cameraId: 'back', at: T0 + 150_000, source: 'capture', reason: 'refused' },
  ];
  await writeBatch(pool, events, camera);
});

afterAll(async () => {
  await pool.end();
  await dropSchema(schema);
});

const hour = { sinceMs: NOW - 3_600_000, untilMs: NOW + 1000 };

describe('findSlowFrames', () => {
  it('lists finished frames over the threshold, slowest first, with percentiles of the window', async () => {
    const r = await findSlowFrames(pool, { ...hour, thresholdMs: 500 });
    expect(r.frames.map((f) => f.frameId)).toEqual([ids.slow2, ids.slow1, ids.slowFailed]);
    expect(r.frames[0]).toMatchObject({ cameraId: 'back', state: 'completed', totalMs: 1500 });
    expect(r.frames[0].stages).toEqual([
      { processorId: 'motion-1', capability: 'motion', state: 'completed', attempts: 1, waitMs: 5, durationMs: 1493 },
    ]);
    expect(r.frames[2]).toMatchObject({
      state: 'failed',
      stages: [expect.objectContaining({ error: 'TimeoutError: frame timeout after 700 ms' })],
    });
    // 40 fast + 3 slow + 2 failed + 2 dropped are finished; the stuck one is not.
    expect(r).toMatchObject({ finished: 47, slow: 3, thresholdMs: 500 });
    expect(r.p50Ms).toBeGreaterThan(40);
    expect(r.p99Ms).toBeGreaterThanOrEqual(900);
    expect(renderSlow(r)).toContain(ids.slow2);
  });

  it('filters by camera, limits, and leaves out frames outside the window', async () => {
    const front = await findSlowFrames(pool, { ...hour, thresholdMs: 500, cameraId: 'front', limit: 1 });
    expect(front.frames.map((f) => f.frameId)).toEqual([ids.slow1]);
    expect(front.slow).toBe(2);
    const wide = await findSlowFrames(pool, { sinceMs: NOW - 4 * 3_600_000, thresholdMs: 500 });
    expect(wide.frames[0].frameId).toBe(ids.oldSlow);
  });

  it('rejects an empty window and a bad limit', async () => {
    await expect(findSlowFrames(pool, { sinceMs: NOW, untilMs: NOW - 1, thresholdMs: 1 })).rejects.toThrow(InvalidInputError);
    await expect(findSlowFrames(pool, { ...hour, thresholdMs: 1, limit: 0 })).rejects.toThrow(InvalidInputError);
  });
});

describe('findFailures', () => {
  it('groups failed stages and drops by stage and error type, most frequent first', async () => {
    const r = await findFailures(pool, hour);
    expect(r.total).toBe(5);
    expect(r.groups.map((g) => [g.processorId, g.type, g.errorType, g.count])).toEqual([
      ['motion-1', 'processing.failed', 'TypeError', 2],
      [null, 'frame.dropped', 'backpressure', 1],
      ['motion-1', 'processing.failed', 'TimeoutError', 1],
      ['motion-1', 'frame.dropped', 'circuit open', 1],
    ]);
    const typeErrors = r.groups[0];
    expect(typeErrors).toMatchObject({ capability: 'motion', frames: 2, cameras: ['back', 'front'] });
    expect(typeErrors.exampleFrameIds).toEqual([ids.failed2, ids.failed1]);
    expect(typeErrors.sampleMessage).toMatch(/^TypeError: cannot read/);
    const text = renderFailures(r);
    expect(text).toContain('(before routing)');
    expect(text).toContain('TypeError');
  });

  it('takes the window and camera into account', async () => {
    const back = await findFailures(pool, { ...hour, cameraId: 'back' });
    expect(back.groups.map((g) => g.errorType)).toEqual(['TypeError']);
    const wide = await findFailures(pool, { sinceMs: NOW - 4 * 3_600_000 });
    expect(wide.groups.find((g) => g.errorType === 'TimeoutError')?.count).toBe(2);
  });
});

describe('searchFrames', () => {
  it('finds frames by camera and state, newest first', async () => {
    const failed = await searchFrames(pool, { ...hour, state: 'failed' });
    expect(failed.frames.map((f) => f.frameId)).toEqual([ids.failed2, ids.failed1, ids.slowFailed]);
    const frontFailed = await searchFrames(pool, { ...hour, state: 'failed', cameraId: 'front' });
    expect(frontFailed.frames.map((f) => f.frameId)).toEqual([ids.failed1, ids.slowFailed]);
    const dropped = await searchFrames(pool, { ...hour, state: 'dropped' });
    expect(dropped.frames.map((f) => [f.frameId, f.droppedReason])).toEqual([
      [ids.dropped2, 'circuit open'],
      [ids.dropped1, 'backpressure: shed'],
    ]);
    const stuck = await searchFrames(pool, { ...hour, state: 'processing' });
    expect(stuck.frames.map((f) => f.frameId)).toEqual([ids.stuck]);
    expect(stuck.frames[0]).toMatchObject({ totalMs: null, stages: [expect.objectContaining({ state: 'processing' })] });
  });

  it('without a state: the newest frames of the window, limited', async () => {
    const r = await searchFrames(pool, { ...hour, cameraId: 'back', limit: 3 });
    expect(r.frames).toHaveLength(3);
    expect(r.frames.every((f) => f.cameraId === 'back')).toBe(true);
    expect(r.frames[0].capturedAt >= r.frames[1].capturedAt).toBe(true);
    expect(renderSearch(r)).toContain('3 frame(s)');
    const none = await searchFrames(pool, { ...hour, cameraId: 'nobody' });
    expect(none.frames).toEqual([]);
    expect(renderSearch(none)).toContain('no frames match');
  });
});

describe('camera events', () => {
  it('lists them with the offline periods they describe', async () => {
    const r = await findCameraEvents(pool, hour);
    expect(r.events.map((e) => [e.cameraId, e.type])).toEqual([
      ['front', 'camera.offline'],
      ['front', 'camera.online'],
      ['back', 'camera.frozen'],
      ['back', 'camera.offline'],
    ]);
    expect(r.offline).toEqual([
      {
        cameraId: 'front',
        from: new Date(T0 + 100_500).toISOString(),
        to: new Date(T0 + 130_500).toISOString(),
        durationMs: 30_000,
        reason: 'timeout: no frame for 5s',
      },
      { cameraId: 'back', from: new Date(T0 + 150_000).toISOString(), to: null, durationMs: null, reason: 'refused' },
    ]);
    const front = await findCameraEvents(pool, { ...hour, cameraId: 'front' });
    expect(front.events).toHaveLength(2);
    expect(renderCamera(r)).toContain('still offline');
  });

  it('offlinePeriods ignores an online without an offline before it', () => {
    expect(
      offlinePeriods([{ eventId: 'a', cameraId: 'c', type: 'camera.online', at: new Date(0).toISOString(), source: 'capture' }]),
    ).toEqual([]);
  });

  it("trace find shows the camera events of the frame's camera around the frame", async () => {
    const j = (await findJourney(pool, ids.slow1))!;
    // slow1 was captured at T0 + 100 s on front: offline +0.5 s, online +30.5 s; back's are not shown.
    expect(j.cameraEvents.map((c) => [c.type, c.offsetMs, c.reason ?? null])).toEqual([
      ['camera.offline', 500, 'timeout: no frame for 5s'],
      ['camera.online', 30_500, null],
    ]);
    expect(j.sampled).toBe(true);
    const narrow = (await findJourney(pool, ids.slow1, { cameraWindowMs: 10_000 }))!;
    expect(narrow.cameraEvents.map((c) => c.type)).toEqual(['camera.offline']);
    const text = renderJourney(j);
    expect(text).toContain('camera events');
    expect(text).toContain('+500');
    expect(text).toContain('camera.offline');
  });
});
