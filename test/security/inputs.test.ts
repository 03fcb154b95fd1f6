import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import type { CameraEvent } from '../../src/domain/camera-events.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { writeBatch } from '../../src/store/event-writer.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';
import { findJourney } from '../../src/trace/journey.js';
import { findCameraEvents, findFailures, findSlowFrames, searchFrames } from '../../src/trace/queries.js';
import { runDetektr } from '../helpers/cli.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';

/**
 * Issue #7: "SQL only parameterised; stream prefix and names validated". Hostile ids
 * (quotes, semicolons, LIKE wildcards, backslashes, newlines, array-literal braces) go into
 * the store and back out of every query exactly as they are, match only themselves, and
 * never make an SQL error; hostile prefixes, schema names and stream names are refused
 * with exit 2 naming the setting. The CLI runs dist/ (`npm run build` first).
 */

const HOSTILE = [
  `x'; DROP TABLE frame_events; --`,
  `' OR '1'='1`,
  '%',
  '_',
  'a%_b',
  'back\\slash"quote',
  'line\nbreak;semi',
  '{a,b}',
  '$1',
  `all'"\\%_;{},\n-- */`,
];
const BENIGN = 'cam1';
const SQL_ERROR = /syntax error|relation .* does not exist|unterminated|malformed array|invalid input syntax|SQLSTATE|\bat character\b/i;

/** A frame of `camera` that `processor` failed, with its error and a camera event: every text column holds the hostile value. */
function seed(value: string, t0: number): { frameId: string; events: LifecycleEvent[]; camera: CameraEvent } {
  const frameId = ulid(t0);
  const ev = (type: LifecycleEvent['type'], at: number, extra: Partial<LifecycleEvent> = {}): LifecycleEvent => ({
    eventId: ulid(at),
    type,
    frameId,
    cameraId: value,
    at,
    source: type === 'frame.captured' ? 'capture' : type === 'frame.queued' ? 'buffer' : 'process',
    ...extra,
  });
  const stage = { processorId: value, capability: value };
  return {
    frameId,
    events: [
      ev('frame.captured', t0, { data: { width: 320, height: 240, format: 'jpeg', sizeBytes: 1000, priority: 5, note: value } }),
      ev('frame.queued', t0 + 2, stage),
      ev('processing.started', t0 + 5, { ...stage, attempt: 1 }),
      ev('processing.failed', t0 + 900, { ...stage, attempt: 1, durationMs: 890, error: value }),
    ],
    camera: {
      eventId: ulid(t0 + 1),
      type: 'camera.offline',
      cameraId: value,
      at: t0 + 1,
      source: 'capture',
      reason: value,
      data: { error: value },
    },
  };
}

describe('hostile ids reach SQL only as parameters', () => {
  const schema = uniqueSchema('inputs');
  let pool: pg.Pool;
  const frames = new Map<string, string>();
  const env = () => ({ DATABASE_URL: TEST_DATABASE_URL, DETEKTR_DB_SCHEMA: schema, DETEKTR_CONFIG: undefined });
  const counts = async () =>
    (
      await pool.query<{ t: string; n: number }>(
        `SELECT 'frame_events' AS t, count(*)::int AS n FROM frame_events UNION ALL SELECT 'frame_metadata', count(*)::int FROM frame_metadata
     UNION ALL SELECT 'processing_stages', count(*)::int FROM processing_stages UNION ALL SELECT 'camera_events', count(*)::int FROM camera_events`,
      )
    ).rows;

  beforeAll(async () => {
    pool = createPool(TEST_DATABASE_URL, { schema, max: 3 });
    await migrate({ pool, schema });
    const t0 = Date.now() - 60_000;
    const seeded = [BENIGN, ...HOSTILE].map((v, i) => seed(v, t0 + i * 1000));
    await writeBatch(
      pool,
      seeded.flatMap((s) => s.events),
      seeded.map((s) => s.camera),
    );
    seeded.forEach((s, i) => frames.set([BENIGN, ...HOSTILE][i], s.frameId));
  });

  afterAll(async () => {
    await pool?.end();
    await dropSchema(schema);
  });

  it('stores hostile ids verbatim and finds each one by exactly itself (no wildcard, no injection)', async () => {
    const before = await counts();
    const n = HOSTILE.length + 1;
    expect(before).toEqual([
      { t: 'frame_events', n: 4 * n },
      { t: 'frame_metadata', n },
      { t: 'processing_stages', n },
      { t: 'camera_events', n },
    ]);
    const sinceMs = Date.now() - 3_600_000;
    for (const value of [BENIGN, ...HOSTILE]) {
      const what = JSON.stringify(value);
      const search = await searchFrames(pool, { sinceMs, cameraId: value });
      expect(
        search.frames.map((f) => [f.frameId, f.cameraId]),
        what,
      ).toEqual([[frames.get(value), value]]);
      const failed = await searchFrames(pool, { sinceMs, cameraId: value, state: 'failed' });
      expect(
        failed.frames.map((f) => f.cameraId),
        what,
      ).toEqual([value]);
      const cams = await findCameraEvents(pool, { sinceMs, cameraId: value });
      expect(
        cams.events.map((e) => [e.cameraId, e.reason]),
        what,
      ).toEqual([[value, value]]);
      const failures = await findFailures(pool, { sinceMs, cameraId: value });
      expect(
        failures.groups.map((g) => [g.processorId, g.cameras, g.sampleMessage]),
        what,
      ).toEqual([[value, [value], value]]);
      const slow = await findSlowFrames(pool, { sinceMs, cameraId: value, thresholdMs: 0 });
      expect(
        slow.frames.map((f) => f.cameraId),
        what,
      ).toEqual([value]);
      const journey = (await findJourney(pool, frames.get(value)!))!;
      expect([journey.cameraId, journey.stages.map((s) => [s.processorId, s.capability, s.error])], what).toEqual([
        value,
        [[value, value, value]],
      ]);
      await expect(findJourney(pool, value), what).rejects.toThrow(InvalidInputError);
    }
    expect(await counts()).toEqual(before);
  });

  it('`trace find|search|camera|failures` with hostile ids: a clean answer or exit code, never an SQL error', async () => {
    const runs: [string, string[], (r: { code: number | null; stdout: string; stderr: string }) => void][] = [];
    for (const value of [HOSTILE[0], HOSTILE[HOSTILE.length - 1]]) {
      const what = JSON.stringify(value);
      runs.push(
        [
          `trace find ${what}`,
          ['trace', 'find', value],
          (r) => {
            expect(r.code).toBe(2);
            expect(r.stderr).toMatch(/is not a ULID/);
          },
        ],
        [
          `trace search --camera ${what}`,
          ['trace', 'search', '--camera', value, '--json'],
          (r) => {
            expect(r.code).toBe(0);
            expect((JSON.parse(r.stdout) as { frames: { cameraId: string }[] }).frames.map((f) => f.cameraId)).toEqual([value]);
          },
        ],
        [
          `trace camera ${what}`,
          ['trace', 'camera', value, '--json'],
          (r) => {
            expect(r.code).toBe(0);
            expect((JSON.parse(r.stdout) as { events: { cameraId: string }[] }).events.map((e) => e.cameraId)).toEqual([value]);
          },
        ],
        [
          `trace failures --camera ${what}`,
          ['trace', 'failures', '--camera', value],
          (r) => {
            expect(r.code).toBe(0);
            expect(r.stdout).toMatch(/1 failure event/);
          },
        ],
      );
    }
    runs.push(
      [
        'trace find <unknown ULID>',
        ['trace', 'find', ulid()],
        (r) => {
          expect(r.code).toBe(1);
          expect(r.stderr).toMatch(/not found/);
        },
      ],
      [
        'trace camera <unknown, with wildcards>',
        ['trace', 'camera', '%nobody%', '--json'],
        (r) => {
          expect(r.code).toBe(0);
          expect(JSON.parse(r.stdout).events).toEqual([]);
        },
      ],
    );
    const before = await counts();
    for (let i = 0; i < runs.length; i += 3) {
      const batch = runs.slice(i, i + 3);
      const results = await Promise.all(batch.map(([, args]) => runDetektr(args, env())));
      batch.forEach(([label, , check], j) => {
        const r = results[j];
        try {
          check(r);
          expect(r.stdout + r.stderr).not.toMatch(SQL_ERROR);
        } catch (err) {
          throw new Error(`${label}: ${(err as Error).message}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
        }
      });
    }
    const tables = await pool.query<{ t: string | null }>(
      "SELECT to_regclass(t)::text AS t FROM unnest(ARRAY['frame_events', 'frame_metadata', 'processing_stages', 'camera_events']) t",
    );
    expect(tables.rows.map((r) => r.t)).toEqual(['frame_events', 'frame_metadata', 'processing_stages', 'camera_events']);
    expect(await counts()).toEqual(before);
  }, 60_000);
});

describe('prefixes, schema names and stream names are validated', () => {
  const BAD_NAMES = ['a b', 'x"y', "o'k", 'a*', 'a{b}', '{x}', 'a\nb', 'a;b', 'a?b', 'a[b]'];
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'detektr-inputs-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a bad prefix or schema from a flag, the environment or the file, naming the setting', () => {
    for (const bad of BAD_NAMES) {
      const prefixFile = join(dir, 'bad-prefix.yml');
      const schemaFile = join(dir, 'bad-schema.yml');
      writeFileSync(prefixFile, `prefix: ${JSON.stringify(bad)}\n`);
      writeFileSync(schemaFile, `dbSchema: ${JSON.stringify(bad)}\n`);
      const cases: [Parameters<typeof loadConfig>[0], RegExp][] = [
        [{ flags: { prefix: bad }, env: {} }, /^--prefix: /],
        [{ env: { DETEKTR_PREFIX: bad } }, /^DETEKTR_PREFIX: /],
        [{ flags: { dbSchema: bad }, env: {} }, /^--db-schema: schema name .* is invalid/],
        [{ env: { DETEKTR_DB_SCHEMA: bad } }, /^DETEKTR_DB_SCHEMA: schema name .* is invalid/],
        [{ env: {}, configPath: prefixFile }, /bad-prefix\.yml: prefix: /],
        [{ env: {}, configPath: schemaFile }, /bad-schema\.yml: dbSchema: schema name .* is invalid/],
      ];
      for (const [input, message] of cases) {
        let err: unknown;
        try {
          loadConfig(input);
        } catch (e) {
          err = e;
        }
        expect(err, `${JSON.stringify(bad)} ${JSON.stringify(input)}`).toBeInstanceOf(InvalidInputError);
        expect((err as Error).message, JSON.stringify(bad)).toMatch(message);
      }
    }
  });

  it('exits 2 naming the setting, before touching Redis or PostgreSQL', async () => {
    const file = join(dir, 'bad-schema.yml');
    writeFileSync(file, 'dbSchema: "s*"\n');
    // Nothing listens on these: a command that got as far as connecting would fail differently.
    const dead = {
      REDIS_URL: 'redis://127.0.0.1:1',
      DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x',
      DETEKTR_CONFIG: undefined,
      DETEKTR_METRICS_PORT: '0',
    };
    const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [['config', 'show', '--prefix', 'a b'], {}, /--prefix: "a b" must be/],
      [['buffer'], { DETEKTR_PREFIX: 'p*' }, /DETEKTR_PREFIX: "p\*" must be/],
      [['store'], { DETEKTR_PREFIX: 'a\nb' }, /DETEKTR_PREFIX: "a\nb" must be/],
      [['trace', 'search', '--db-schema', 'x"y'], {}, /--db-schema: schema name "x\\"y" is invalid/],
      [['migrate'], { DETEKTR_DB_SCHEMA: 'a{b}' }, /DETEKTR_DB_SCHEMA: schema name "a\{b\}" is invalid/],
      [['trace', 'find', ulid(), '--config', file], {}, /bad-schema\.yml: dbSchema: schema name "s\*" is invalid/],
      [['process', '--processor', 'sample', '--id', 'a b'], {}, /--id "a b" must be 1-64 characters/],
      [['process', '--processor', 'sample', '--capability', 'x*'], {}, /--capability "x\*" must be 1-64 characters/],
      [['capture', '--camera', 'a{b}=testsrc'], {}, /camera|id/i],
    ];
    for (let i = 0; i < cases.length; i += 3) {
      const batch = cases.slice(i, i + 3);
      const results = await Promise.all(batch.map(([args, e]) => runDetektr(args, { ...dead, ...e })));
      batch.forEach(([args, , message], j) => {
        const r = results[j];
        expect(r.code, `${JSON.stringify(args)}: ${r.stderr}`).toBe(2);
        expect(r.stderr, JSON.stringify(args)).toMatch(message);
        expect(r.stderr, JSON.stringify(args)).not.toMatch(/ECONNREFUSED/);
        expect(r.stderr, JSON.stringify(args)).not.toMatch(SQL_ERROR);
      });
    }
  }, 60_000);
});
