import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { encodeTime } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_TYPES, type LifecycleEvent } from '../../src/domain/events.js';
import { projectFrame, type StageState } from '../../src/domain/lifecycle.js';
import { writeBatch, writeEvents } from '../../src/store/event-writer.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';

/**
 * The store's projection SQL is generated from src/domain/lifecycle.ts; this proves the
 * two agree: random event sequences (any types, order, duplicates, ties in time and
 * attempt, events without a processor), written through the real writer into real
 * PostgreSQL in several batches, are stored with the states projectFrame() replays.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `t_${randomBytes(5).toString('hex')}`;
// Every frame is captured in this one hour, so one partition holds the run.
const T0 = Date.UTC(2026, 10, 1, 12);
const PROCESSORS = ['motion-1', 'face-1', 'plate-1'];
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

let pool: pg.Pool;
beforeAll(async () => {
  pool = createPool(DATABASE_URL, { schema, max: 4 });
  await migrate({ pool, schema });
});
afterAll(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await pool.end();
});

// Fresh frame ids for every run, shrinking included, so no run sees another's events.
let frameSeq = 0;
function nextFrameId(): string {
  let n = frameSeq++;
  let random = '';
  for (let i = 0; i < 16; i++, n = Math.floor(n / 32)) random = CROCKFORD[n % 32] + random;
  return encodeTime(T0, 10) + random;
}

const eventSpec = fc.record({
  type: fc.constantFrom(...EVENT_TYPES),
  // Mostly a stage's event; sometimes none (a frame drop before routing, or a stray event).
  processorId: fc.option(fc.constantFrom(...PROCESSORS), { nil: undefined, freq: 4 }),
  attempt: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
  // Few distinct times and ids in no relation to them: ties go down the decisive order.
  dt: fc.integer({ min: 0, max: 5 }),
  tag: fc.constantFrom('A', 'B', 'C'),
});

/** One frame's arrival sequence: distinct events plus duplicates, in a random order. */
const frameSpec = fc.record({
  events: fc.array(eventSpec, { minLength: 1, maxLength: 8 }),
  duplicates: fc.array(fc.nat(), { maxLength: 4 }),
  order: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
});

const runSpec = fc.record({
  frames: fc.array(frameSpec, { minLength: 1, maxLength: 30 }),
  writes: fc.integer({ min: 1, max: 3 }),
  parallel: fc.boolean(),
});

function arrivals(spec: typeof frameSpec extends fc.Arbitrary<infer T> ? T : never): LifecycleEvent[] {
  const frameId = nextFrameId();
  const distinct = spec.events.map((s, k): LifecycleEvent => ({
    eventId: `${s.tag}-${frameId}-${k}`,
    type: s.type,
    frameId,
    cameraId: 'cam-prop',
    at: T0 + s.dt,
    source: 'property',
    processorId: s.processorId,
    capability: s.processorId?.replace(/-\d+$/, ''),
    attempt: s.attempt,
  }));
  const all = [...distinct, ...spec.duplicates.map((i) => distinct[i % distinct.length])];
  return all
    .map((e, i) => ({ e, key: spec.order[i % spec.order.length] }))
    .sort((a, b) => a.key - b.key)
    .map(({ e }) => e);
}

describe('lifecycle projection: PostgreSQL equals the TypeScript replay (property-based)', () => {
  it('stores the frame and stage states projectFrame() gives, for any events in any order and with duplicates', async () => {
    await fc.assert(
      fc.asyncProperty(runSpec, async (run) => {
        const frames = run.frames.map(arrivals);
        // Frames interleaved as they would arrive from many processors, split into `writes` batches.
        const stream: LifecycleEvent[] = [];
        for (let i = 0; stream.length < frames.flat().length; i++) for (const f of frames) if (i < f.length) stream.push(f[i]);
        const size = Math.ceil(stream.length / run.writes);
        for (let i = 0; i < stream.length; i += size) {
          const part = stream.slice(i, i + size);
          if (run.parallel) await writeBatch(pool, part, [], { parallelism: 2 });
          else await writeEvents(pool, part);
        }

        const ids = frames.map((f) => f[0].frameId);
        const stored = await pool.query<{ frame_id: string; state: string; stages: Record<string, StageState> | null }>(
          `SELECT m.frame_id, m.state,
                  (SELECT jsonb_object_agg(s.processor_id, s.state) FROM processing_stages s
                   WHERE s.captured_at = m.captured_at AND s.frame_id = m.frame_id) AS stages
           FROM frame_metadata m WHERE m.captured_at = $2 AND m.frame_id = ANY($1)`,
          [ids, new Date(T0).toISOString()],
        );
        const byId = new Map(stored.rows.map((r) => [r.frame_id, { state: r.state, stages: r.stages ?? {} }]));
        for (const f of frames) {
          const replayed = projectFrame(f);
          expect(byId.get(f[0].frameId), `frame ${f[0].frameId}: ${JSON.stringify(f)}`).toEqual({
            state: replayed.state,
            stages: Object.fromEntries(replayed.stages),
          });
        }
      }),
      { numRuns: 100 },
    );
  });
});
