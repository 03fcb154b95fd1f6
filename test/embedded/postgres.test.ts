import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { makeEvent } from '../../src/domain/events.js';
import { newFrameId } from '../../src/domain/frame-id.js';
import { EmbeddedPostgres, startupSettings } from '../../src/embedded/postgres.js';
import { resolveDatabase } from '../../src/embedded/resolve-backends.js';
import { writeEvents } from '../../src/store/event-writer.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';
import { findJourney } from '../../src/trace/journey.js';

describe('embedded PostgreSQL (PGlite over the wire protocol)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'detektr-pglite-'));
  let epg: EmbeddedPostgres;
  let url: string;
  const pools: pg.Pool[] = [];
  const pool = (schema?: string, max = 4) => {
    const p = createPool(url, { schema, max });
    pools.push(p);
    return p;
  };

  beforeAll(async () => {
    epg = await EmbeddedPostgres.open({ dataDir: join(dir, 'pgdata') });
    url = await epg.listen();
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    await epg?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the migrations, the set-based event writer and the journey query through pg', async () => {
    const db = pool('detektr');
    const res = await migrate({ pool: db, schema: 'detektr' });
    expect(res.current).toBeGreaterThanOrEqual(1);
    expect((await migrate({ pool: db, schema: 'detektr' })).applied).toEqual([]);
    const frameId = newFrameId();
    const base = { frameId, cameraId: 'cam' } as const;
    await writeEvents(db, [
      makeEvent({ ...base, type: 'frame.captured', source: 'capture' }),
      makeEvent({ ...base, type: 'frame.queued', source: 'buffer', processorId: 'sample', capability: 'sample', attempt: 1 }),
      makeEvent({ ...base, type: 'processing.started', source: 'process', processorId: 'sample', capability: 'sample', attempt: 1 }),
      makeEvent({
        ...base,
        type: 'processing.completed',
        source: 'process',
        processorId: 'sample',
        capability: 'sample',
        attempt: 1,
        durationMs: 2,
      }),
    ]);
    const j = await findJourney(db, frameId);
    expect(j?.state).toBe('completed');
    expect(j?.stages.map((s) => [s.processorId, s.state])).toEqual([['sample', 'completed']]);
    const pct = await db.query<{ p: number }>('SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS p FROM unnest($1::int[]) x', [
      [1, 2, 3, 4],
    ]);
    expect(pct.rows[0].p).toBe(2.5);
  });

  it('gives each connection its own search_path (options=-c search_path=...), even interleaved', async () => {
    const admin = pool(undefined, 1);
    await admin.query(
      `CREATE SCHEMA aa; CREATE TABLE aa.t AS SELECT 'a'::text AS v; CREATE SCHEMA bb; CREATE TABLE bb.t AS SELECT 'b'::text AS v`,
    );
    const a = pool('aa');
    const b = pool('bb');
    const got = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? b : a).query<{ v: string; n: number }>('SELECT v, $1::int AS n FROM t', [i])),
    );
    got.forEach((r, i) => expect([r.rows[0].v, r.rows[0].n]).toEqual([i % 2 ? 'b' : 'a', i]));
    expect((await admin.query<{ search_path: string }>('SHOW search_path')).rows[0].search_path).toMatch(/public/);
  });

  it('never interleaves another connection into an open transaction', async () => {
    const db = pool(undefined, 4);
    await db.query('CREATE TABLE tx_probe (v int)');
    const c1 = await db.connect();
    await c1.query('BEGIN');
    await c1.query('INSERT INTO tx_probe VALUES (1)');
    let seen: number | undefined;
    const other = db.query<{ n: number }>('SELECT count(*)::int AS n FROM tx_probe').then((r) => (seen = r.rows[0].n));
    await new Promise((r) => setTimeout(r, 150));
    expect(seen).toBeUndefined(); // waits: it would see the uncommitted row on the shared session
    await c1.query('COMMIT');
    c1.release();
    await other;
    expect(seen).toBe(1);
  });

  it('rolls back the transaction of a connection that went away, and carries on', async () => {
    const db = pool(undefined, 2);
    await db.query('CREATE TABLE gone_probe (v int)');
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('BEGIN');
    await c.query('INSERT INTO gone_probe VALUES (1)');
    await c.end();
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM gone_probe')).rows[0].n).toBe(0);
  });

  it('refuses a second process on the same data directory', async () => {
    // our own pid holds the lock: pretend it is another live process (the test runner's parent)
    writeFileSync(join(dir, 'pgdata.lock'), JSON.stringify({ pid: process.ppid }));
    await expect(EmbeddedPostgres.open({ dataDir: join(dir, 'pgdata') })).rejects.toThrow(/in use by process/);
    writeFileSync(join(dir, 'pgdata.lock'), JSON.stringify({ pid: process.pid }));
  });

  it('reads -c settings from a startup packet', () => {
    const body = Buffer.from('user\0postgres\0options\0-c search_path="detektr" --statement-timeout=5s -cwork_mem=4MB\0\0');
    const msg = Buffer.concat([Buffer.alloc(8), body]);
    msg.writeInt32BE(msg.length, 0);
    msg.writeInt32BE(196608, 4);
    expect(Object.fromEntries(startupSettings(msg))).toEqual({ search_path: '"detektr"', statement_timeout: '5s', work_mem: '4MB' });
  });

  it('resolveDatabase: a set URL wins; else the embedded files (opened in-process); else a clear error', async () => {
    const cfg = (env: Record<string, string>) => loadConfig({ env, cwd: dir });
    expect((await resolveDatabase(cfg({ DATABASE_URL: 'postgres://u@h/db', DETEKTR_DATA_DIR: dir }))).kind).toBe('external');
    await expect(resolveDatabase(cfg({ DETEKTR_DATA_DIR: join(dir, 'empty') }))).rejects.toThrow(
      /no DATABASE_URL and no embedded data in .*empty: run `detektr run` first or set DATABASE_URL/,
    );

    await Promise.all(pools.splice(0).map((p) => p.end()));
    await epg.close();
    writeFileSync(
      join(dir, 'run.json'),
      JSON.stringify({ pid: 2 ** 22 + 12345, redisUrl: 'redis://x', databaseUrl: 'postgres://dead', startedAt: '' }),
    ); // a dead run
    const db = await resolveDatabase(cfg({ DETEKTR_DATA_DIR: dir }));
    try {
      expect(db.kind).toBe('embedded');
      const p = createPool(db.url, { schema: 'detektr', max: 1 });
      expect((await p.query<{ n: number }>('SELECT count(*)::int AS n FROM frame_events')).rows[0].n).toBe(4);
      await p.end();
    } finally {
      await db.close();
    }
    epg = await EmbeddedPostgres.open({ dataDir: join(dir, 'pgdata') }); // for afterAll
  }, 60_000);
});
