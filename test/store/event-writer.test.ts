import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MalformedMessageError } from '../../src/domain/errors.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { ulid } from 'ulid';
import type { FrameId } from '../../src/domain/frame-id.js';
import { writeBatch, writeEvents } from '../../src/store/event-writer.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const TRACE = 'a'.repeat(32);
// Not the monotonic factory: ids must carry the times the tests give them.
const newEventId = (at = Date.now()) => ulid(at);

interface Db {
  schema: string;
  pool: pg.Pool;
}
const dbs: Db[] = [];

async function newDb(): Promise<Db> {
  const schema = `t_${randomBytes(5).toString('hex')}`;
  const pool = createPool(DATABASE_URL, { schema, max: 4 });
  await migrate({ pool, schema });
  const db = { schema, pool };
  dbs.push(db);
  return db;
}

let db: Db;
beforeAll(async () => {
  db = await newDb();
});
afterAll(async () => {
  for (const d of dbs) {
    await d.pool.query(`DROP SCHEMA IF EXISTS ${d.schema} CASCADE`);
    await d.pool.end();
  }
});

type Outcome = 'completed' | 'failed' | 'dropped' | 'queued' | 'processing';

/** The events of one frame: captured at t0, then per processor queued (+2ms) .. outcome. */
function frameEvents(outcomes: Record<string, Outcome>, opts: { frameId?: FrameId; t0?: number; camera?: string } = {}): LifecycleEvent[] {
  const t0 = opts.t0 ?? Date.now() - 60_000;
  const frameId = opts.frameId ?? ulid(t0);
  const cameraId = opts.camera ?? 'cam01';
  const ev = (type: LifecycleEvent['type'], at: number, extra: Partial<LifecycleEvent> = {}): LifecycleEvent => ({
    eventId: newEventId(at),
    type,
    frameId,
    cameraId,
    at,
    source: type === 'frame.captured' ? 'capture' : type.startsWith('processing') ? 'process' : 'buffer',
    traceId: TRACE,
    spanId: randomBytes(8).toString('hex'),
    ...extra,
  });
  const out = [ev('frame.captured', t0, { data: { width: 1280, height: 720, format: 'jpeg', sizeBytes: 123456, priority: 5 } })];
  let i = 0;
  for (const [processorId, outcome] of Object.entries(outcomes)) {
    const p = { processorId, capability: processorId.replace(/-\d+$/, '') };
    const q = t0 + 2 + i++;
    out.push(ev('frame.queued', q, p));
    if (outcome === 'dropped') {
      out.push(ev('frame.dropped', q + 5, { ...p, reason: 'circuit open' }));
      continue;
    }
    if (outcome === 'queued') continue;
    out.push(ev('processing.started', q + 10, { ...p, attempt: 1 }));
    if (outcome === 'completed') out.push(ev('processing.completed', q + 40, { ...p, attempt: 1, durationMs: 29.5 }));
    if (outcome === 'failed') out.push(ev('processing.failed', q + 40, { ...p, attempt: 1, durationMs: 30, error: 'boom' }));
  }
  return out;
}

async function inTx<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const r = await fn(c);
    await c.query('COMMIT');
    return r;
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  } finally {
    c.release();
  }
}

async function frame(d: Db, frameId: string) {
  const { rows } = await d.pool.query('SELECT * FROM frame_metadata WHERE frame_id = $1', [frameId]);
  return rows[0];
}

async function stages(d: Db, frameId: string) {
  const { rows } = await d.pool.query('SELECT * FROM processing_stages WHERE frame_id = $1 ORDER BY processor_id', [frameId]);
  return rows;
}

/** The projections, minus updated_at (which says when, not what). */
async function projection(d: Db, withUpdatedAt = false) {
  const f = await d.pool.query('SELECT * FROM frame_metadata ORDER BY frame_id');
  const s = await d.pool.query('SELECT * FROM processing_stages ORDER BY frame_id, processor_id');
  const n = await d.pool.query('SELECT count(*)::int AS n FROM frame_events');
  const frames = withUpdatedAt ? f.rows : f.rows.map(({ updated_at: _u, ...rest }) => rest);
  return { frames, stages: s.rows, events: n.rows[0].n };
}

function shuffle<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

describe('writeEvents', () => {
  it('projects a fan-out to two processors into a completed frame with two stages', async () => {
    const events = frameEvents({ motion: 'completed', sample: 'completed' });
    const id = events[0].frameId;
    expect(await inTx(db.pool, (c) => writeEvents(c, events))).toEqual({ inserted: 7 });

    const f = await frame(db, id);
    expect(f).toMatchObject({
      camera_id: 'cam01',
      state: 'completed',
      width: 1280,
      height: 720,
      format: 'jpeg',
      size_bytes: '123456',
      priority: 5,
      dropped_reason: null,
      trace_id: TRACE,
    });
    expect(f.captured_at.getTime()).toBe(events[0].at);
    expect(f.first_event_at.getTime()).toBe(events[0].at);
    expect(f.last_event_at.getTime()).toBe(Math.max(...events.map((e) => e.at)));

    const st = await stages(db, id);
    expect(st).toHaveLength(2);
    expect(st.map((s) => [s.processor_id, s.capability, s.state, s.attempts, s.duration_ms, s.error])).toEqual([
      ['motion', 'motion', 'completed', 1, 29.5, null],
      ['sample', 'sample', 'completed', 1, 29.5, null],
    ]);
    expect(st[0].started_at.getTime() - st[0].queued_at.getTime()).toBe(10);
    expect(st[0].finished_at.getTime() - st[0].started_at.getTime()).toBe(30);
    expect(st[0].span_id).toBe(events.find((e) => e.type === 'processing.completed' && e.processorId === 'motion')!.spanId);
  });

  it('reports the frame as processing while one of two stages is still open', async () => {
    const events = frameEvents({ motion: 'completed', sample: 'processing' });
    await writeEvents(db.pool, events);
    expect((await frame(db, events[0].frameId)).state).toBe('processing');
  });

  it('gives the same projection whatever the order and batching of arrival', async () => {
    const t0 = Date.now() - 3_600_000;
    const outcomes: Array<Record<string, Outcome>> = [
      { motion: 'completed', sample: 'completed' },
      { motion: 'failed', sample: 'completed' },
      { motion: 'dropped', sample: 'dropped' },
      { motion: 'queued' },
      { motion: 'processing', sample: 'dropped' },
      {},
    ];
    const all = outcomes.flatMap((o, i) => frameEvents(o, { t0: t0 + i * 100, camera: `cam0${i % 2}` }));
    all.push({ ...all[0], eventId: newEventId(), type: 'frame.dropped', processorId: undefined, reason: 'late', at: t0 + 50 });

    const ordered = await newDb();
    await inTx(ordered.pool, (c) => writeEvents(c, all));
    const expected = await projection(ordered);

    const shuffledDb = await newDb();
    const shuffled = shuffle(all, 42);
    for (let i = 0; i < shuffled.length; i += 3) {
      await inTx(shuffledDb.pool, (c) => writeEvents(c, shuffled.slice(i, i + 3)));
    }
    expect(await projection(shuffledDb)).toEqual(expected);
    expect(expected.frames.map((f) => f.state)).toEqual(['dropped', 'failed', 'dropped', 'queued', 'processing', 'captured']);
  });

  it('changes nothing when a batch is replayed', async () => {
    const d = await newDb();
    const events = [...frameEvents({ motion: 'completed' }), ...frameEvents({ motion: 'failed' })];
    await inTx(d.pool, (c) => writeEvents(c, events));
    const before = await projection(d, true);

    expect(await inTx(d.pool, (c) => writeEvents(c, events))).toEqual({ inserted: 0 });
    expect(await inTx(d.pool, (c) => writeEvents(c, shuffle(events, 7).slice(0, 3)))).toEqual({ inserted: 0 });
    expect(await projection(d, true)).toEqual(before);
  });

  it('counts duplicates inside one batch once', async () => {
    const events = frameEvents({ motion: 'completed' });
    expect(await writeEvents(db.pool, [...events, ...events])).toEqual({ inserted: events.length });
  });

  it('records failed frames with the error of the stage', async () => {
    const events = frameEvents({ motion: 'failed', sample: 'completed' });
    await writeEvents(db.pool, events);
    expect((await frame(db, events[0].frameId)).state).toBe('failed');
    const motion = (await stages(db, events[0].frameId))[0];
    expect(motion).toMatchObject({ state: 'failed', error: 'boom', duration_ms: 30 });
  });

  it('records a frame dropped before routing, with its reason', async () => {
    const [captured] = frameEvents({});
    const dropped: LifecycleEvent = {
      ...captured,
      eventId: newEventId(),
      type: 'frame.dropped',
      source: 'buffer',
      at: captured.at + 3,
      reason: 'backpressure: shed',
      data: undefined,
    };
    await writeEvents(db.pool, [dropped]);
    expect(await frame(db, captured.frameId)).toMatchObject({ state: 'dropped', dropped_reason: 'backpressure: shed', width: null });
    await writeEvents(db.pool, [captured]);
    expect(await frame(db, captured.frameId)).toMatchObject({ state: 'dropped', dropped_reason: 'backpressure: shed', width: 1280 });
    expect(await stages(db, captured.frameId)).toEqual([]);
  });

  it('records a frame whose every stage was dropped as dropped', async () => {
    const events = frameEvents({ motion: 'dropped', sample: 'dropped' });
    await writeEvents(db.pool, events);
    expect(await frame(db, events[0].frameId)).toMatchObject({ state: 'dropped', dropped_reason: 'circuit open' });
    expect((await stages(db, events[0].frameId)).map((s) => [s.state, s.error, s.attempts])).toEqual([
      ['dropped', 'circuit open', 0],
      ['dropped', 'circuit open', 0],
    ]);
  });

  it('keeps a frame with only frame.captured in state captured', async () => {
    const events = frameEvents({});
    await writeEvents(db.pool, events);
    expect(await frame(db, events[0].frameId)).toMatchObject({ state: 'captured', priority: 5 });
  });

  it('counts redeliveries as attempts of one stage', async () => {
    const events = frameEvents({ motion: 'completed' });
    const started = events.find((e) => e.type === 'processing.started')!;
    const completed = events.find((e) => e.type === 'processing.completed')!;
    events.push({ ...started, eventId: newEventId(), attempt: 2, at: started.at + 20 });
    completed.attempt = 2;
    completed.at = started.at + 35;
    await writeEvents(db.pool, shuffle(events, 3));
    expect((await stages(db, events[0].frameId))[0]).toMatchObject({ state: 'completed', attempts: 2 });
  });

  it('ignores frame.captured data of the wrong type instead of failing the batch', async () => {
    const events = frameEvents({});
    events[0].data = { width: 'wide', height: -5, format: 3, sizeBytes: 1e30, priority: 2.6 };
    await writeEvents(db.pool, events);
    expect(await frame(db, events[0].frameId)).toMatchObject({
      width: null,
      height: null,
      format: null,
      size_bytes: null,
      priority: 3,
    });
  });

  it('rejects a malformed event and writes nothing of its batch', async () => {
    const good = frameEvents({ motion: 'completed' });
    const bad = { ...good[1], eventId: 'bad-1', frameId: 'not-a-ulid' };
    const err = await writeEvents(db.pool, [...good, bad]).catch((e) => e);
    expect(err).toBeInstanceOf(MalformedMessageError);
    expect(err.message).toContain('bad-1');
    expect(err.field).toBe('frameId');
    expect(await frame(db, good[0].frameId)).toBeUndefined();
  });

  it('stays correct when two writers project the same frame concurrently', async () => {
    const d = await newDb();
    const events = frameEvents({ motion: 'completed', sample: 'completed' });
    const a = await d.pool.connect();
    const b = await d.pool.connect();
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      await writeEvents(a, events.slice(0, 4));
      // b must wait for a's frame lock, then see a's events once a commits.
      const bWrite = writeEvents(b, events.slice(4));
      await new Promise((r) => setTimeout(r, 100));
      await a.query('COMMIT');
      await bWrite;
      await b.query('COMMIT');
    } finally {
      a.release();
      b.release();
    }
    expect((await frame(d, events[0].frameId)).state).toBe('completed');
    expect((await stages(d, events[0].frameId)).map((s) => s.state)).toEqual(['completed', 'completed']);
  });

  it("records the end-to-end time of finished frames and the trace's sampled flag", async () => {
    const events = frameEvents({ motion: 'completed', sample: 'failed' });
    for (const e of events) e.sampled = false;
    const open = frameEvents({ motion: 'processing' });
    await writeEvents(db.pool, [...events, ...open]);
    // queued +2 (motion) / +3 (sample), finished 40 ms after queueing
    expect(await frame(db, events[0].frameId)).toMatchObject({ state: 'failed', total_ms: 43, sampled: false });
    expect(await frame(db, open[0].frameId)).toMatchObject({ state: 'processing', total_ms: null, sampled: true });
  });

  it('writeBatch: parallel sub-batches give the same projection as one writer, and camera events once', async () => {
    const t0 = Date.now() - 7_200_000;
    const all: LifecycleEvent[] = [];
    for (let i = 0; i < 60; i++) {
      all.push(
        ...frameEvents(i % 7 === 0 ? { motion: 'failed', sample: 'completed' } : { motion: 'completed' }, {
          t0: t0 + i * 50,
          camera: `cam${i % 3}`,
        }),
      );
    }
    const single = await newDb();
    await writeEvents(single.pool, all);
    const parallel = await newDb();
    const shuffled = shuffle(all, 11);
    const camera = [
      { eventId: newEventId(t0), type: 'camera.offline' as const, cameraId: 'cam1', at: t0, source: 'capture', reason: 'refused' },
      {
        eventId: newEventId(t0 + 500),
        type: 'camera.online' as const,
        cameraId: 'cam1',
        at: t0 + 500,
        source: 'capture',
        data: { fps: 5 },
      },
    ];
    let inserted = 0;
    for (let i = 0; i < shuffled.length; i += 40) {
      inserted += (await writeBatch(parallel.pool, shuffled.slice(i, i + 40), i === 0 ? camera : [], { parallelism: 4 })).inserted;
    }
    expect(inserted).toBe(all.length);
    expect(await projection(parallel)).toEqual(await projection(single));
    expect(await writeBatch(parallel.pool, all, camera, { parallelism: 3 })).toEqual({ inserted: 0, cameraInserted: 0 });
    const { rows } = await parallel.pool.query('SELECT type, reason, data FROM camera_events ORDER BY at');
    expect(rows).toEqual([
      { type: 'camera.offline', reason: 'refused', data: null },
      { type: 'camera.online', reason: null, data: { fps: 5 } },
    ]);
  });

  it('writeBatch validates everything before writing anything', async () => {
    const d = await newDb();
    const good = frameEvents({ motion: 'completed' });
    const badCamera = { eventId: newEventId(), type: 'camera.exploded', cameraId: 'c', at: Date.now(), source: 'capture' };
    await expect(writeBatch(d.pool, good, [badCamera as never])).rejects.toThrow(MalformedMessageError);
    expect((await projection(d)).events).toBe(0);
  });

  it('stores awkward strings exactly (quotes, backslashes, braces, commas, NULL, unicode; U+0000 dropped)', async () => {
    const events = frameEvents({ motion: 'failed' });
    const failed = events.find((e) => e.type === 'processing.failed')!;
    const nasty = 'Error: {"a":1}, \\path\\ "quoted" NULL null ünï 😀 tab\there';
    failed.error = `${nasty}\u0000!`;
    failed.reason = 'NULL';
    events[0].data = { ...events[0].data, note: 'a "b" \\ {c}', nul: 'x\u0000y' };
    await writeEvents(db.pool, events);
    const { rows } = await db.pool.query('SELECT error, reason FROM frame_events WHERE event_id = $1', [failed.eventId]);
    expect(rows[0]).toEqual({ error: `${nasty}!`, reason: 'NULL' });
    const cap = await db.pool.query('SELECT data FROM frame_events WHERE event_id = $1', [events[0].eventId]);
    expect(cap.rows[0].data).toMatchObject({ note: 'a "b" \\ {c}', nul: 'xy' });
    expect((await stages(db, events[0].frameId))[0].error).toBe(`${nasty}!`);
  });

  it('writes 10k events in one batch', async () => {
    const d = await newDb();
    const t0 = Date.now() - 600_000;
    const events: LifecycleEvent[] = [];
    for (let i = 0; events.length < 10_000; i++) {
      events.push(...frameEvents({ motion: 'completed' }, { t0: t0 + i * 33, camera: `cam${i % 4}` }));
    }
    const { inserted } = await inTx(d.pool, (c) => writeEvents(c, events));
    expect(inserted).toBe(10_000);
    const { rows } = await d.pool.query('SELECT state, count(*)::int AS n FROM frame_metadata GROUP BY state');
    expect(rows).toEqual([{ state: 'completed', n: 2500 }]);
  });
});
