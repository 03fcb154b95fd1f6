import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionError, InvalidInputError } from '../../src/domain/errors.js';
import { loadMigrations, migrate, schemaVersion } from '../../src/store/migrate.js';
import { createPool, ensureDatabase } from '../../src/store/pg.js';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const rand = () => randomBytes(5).toString('hex');

const schemas: string[] = [];
const newSchema = () => {
  const s = `t_${rand()}`;
  schemas.push(s);
  return s;
};

let pool: pg.Pool;
let dir: string;

beforeAll(async () => {
  pool = createPool(DATABASE_URL, { max: 8 });
  dir = await mkdtemp(join(tmpdir(), 'detektr-migrations-'));
});

afterAll(async () => {
  for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  await pool.end();
  await rm(dir, { recursive: true, force: true });
});

/** Tables of the schema, partitions left out. */
async function tables(schema: string): Promise<string[]> {
  const { rows } = await pool.query<{ t: string }>(
    `SELECT c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`,
    [schema],
  );
  return rows.map((r) => r.t);
}

const PACKAGED = [
  { version: 1, name: 'initial' },
  { version: 2, name: 'partitioned_storage' },
];
const LATEST = PACKAGED.length;

describe('migrate', () => {
  it('applies the packaged migrations, then does nothing on a second run', async () => {
    const schema = newSchema();
    const first = await migrate({ pool, schema });
    expect(first).toEqual({ applied: PACKAGED, current: LATEST, pending: [] });
    expect(await tables(schema)).toEqual([
      'camera_events',
      'detektr_storage',
      'frame_events',
      'frame_metadata',
      'frame_stats_hourly',
      'processing_stages',
      'schema_migrations',
    ]);

    const second = await migrate({ pool, schema });
    expect(second).toEqual({ applied: [], current: LATEST, pending: [] });
    expect(await schemaVersion(pool, schema)).toBe(LATEST);

    const { rows } = await pool.query(`SELECT version, name, length(checksum) AS len FROM ${schema}.schema_migrations ORDER BY version`);
    expect(rows).toEqual(PACKAGED.map((m) => ({ ...m, len: 64 })));
  });

  it('runs against a pool whose search_path is the schema', async () => {
    const schema = newSchema();
    const scoped = createPool(DATABASE_URL, { schema });
    try {
      await migrate({ pool: scoped, schema });
      expect(await schemaVersion(scoped)).toBe(LATEST);
      const { rows } = await scoped.query('SELECT count(*)::int AS n FROM frame_events');
      expect(rows[0].n).toBe(0);
    } finally {
      await scoped.end();
    }
  });

  it('lets concurrent runs queue up instead of racing', async () => {
    const migrationsDir = join(dir, 'concurrent');
    await mkdir(migrationsDir);
    await writeFile(join(migrationsDir, '001_a.sql'), 'CREATE TABLE a (id int); SELECT pg_sleep(0.2);');
    await writeFile(join(migrationsDir, '002_b.sql'), 'CREATE TABLE b (id int);');
    await writeFile(join(migrationsDir, '003_c.sql'), 'ALTER TABLE a ADD COLUMN c int;');
    const schema = newSchema();

    const runs = await Promise.all(Array.from({ length: 6 }, () => migrate({ pool, schema, migrationsDir })));

    const applied = runs.flatMap((r) => r.applied.map((m) => m.version)).sort();
    expect(applied).toEqual([1, 2, 3]);
    expect(runs.every((r) => r.current === 3)).toBe(true);
    expect(await tables(schema)).toEqual(['a', 'b', 'schema_migrations']);
  });

  it('rejects an applied migration whose file changed, naming the file', async () => {
    const migrationsDir = join(dir, 'checksum');
    await mkdir(migrationsDir);
    await writeFile(join(migrationsDir, '001_first.sql'), 'CREATE TABLE first (id int);');
    const schema = newSchema();
    await migrate({ pool, schema, migrationsDir });

    await appendFile(join(migrationsDir, '001_first.sql'), '\nCREATE INDEX ON first (id);');
    await expect(migrate({ pool, schema, migrationsDir })).rejects.toThrow(/001_first\.sql was changed/);
  });

  it('a dry run lists what would be applied and changes nothing', async () => {
    const migrationsDir = join(dir, 'dry');
    await mkdir(migrationsDir);
    await writeFile(join(migrationsDir, '001_one.sql'), 'CREATE TABLE one (id int);');
    await writeFile(join(migrationsDir, 'README.md'), 'not a migration');
    const schema = newSchema();

    expect(await migrate({ pool, schema, migrationsDir, dryRun: true })).toEqual({
      applied: [],
      current: 0,
      pending: [{ version: 1, name: 'one' }],
    });
    const { rowCount } = await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    expect(rowCount).toBe(0);
    expect(await schemaVersion(pool, schema)).toBe(0);

    await migrate({ pool, schema, migrationsDir });
    await writeFile(join(migrationsDir, '002_two.sql'), 'CREATE TABLE two (id int);');
    expect(await migrate({ pool, schema, migrationsDir, dryRun: true })).toEqual({
      applied: [],
      current: 1,
      pending: [{ version: 2, name: 'two' }],
    });
    expect(await tables(schema)).toEqual(['one', 'schema_migrations']);
  });

  it('a failing migration is rolled back and named', async () => {
    const migrationsDir = join(dir, 'failing');
    await mkdir(migrationsDir);
    await writeFile(join(migrationsDir, '001_ok.sql'), 'CREATE TABLE ok (id int);');
    await writeFile(join(migrationsDir, '002_bad.sql'), 'CREATE TABLE half (id int); SELECT * FROM missing_table;');
    const schema = newSchema();
    await expect(migrate({ pool, schema, migrationsDir })).rejects.toThrow(/002_bad\.sql failed/);
    expect(await schemaVersion(pool, schema)).toBe(1);
    expect(await tables(schema)).toEqual(['ok', 'schema_migrations']);
  });

  it('orders migrations by version and rejects duplicate versions', async () => {
    const migrationsDir = join(dir, 'dup');
    await mkdir(migrationsDir);
    await writeFile(join(migrationsDir, '010_later.sql'), '');
    await writeFile(join(migrationsDir, '002_sooner.sql'), '');
    expect((await loadMigrations(migrationsDir)).map((m) => m.version)).toEqual([2, 10]);
    await writeFile(join(migrationsDir, '002_again.sql'), '');
    await expect(loadMigrations(migrationsDir)).rejects.toThrow(/same version/);
  });
});

describe('migration 002: partitioned storage', () => {
  it('upgrades a schema at 001 with data: rows copied into partitioned tables, one partition per day', async () => {
    const schema = newSchema();
    const only001 = join(dir, 'only001');
    await mkdir(only001);
    const packaged = await loadMigrations();
    await writeFile(join(only001, '001_initial.sql'), packaged[0].sql);
    await migrate({ pool, schema, migrationsDir: only001 });
    const t0 = Date.parse('2024-05-01T23:59:59.000Z');
    await pool.query(
      `INSERT INTO ${schema}.frame_events (event_id, frame_id, camera_id, type, at, captured_at, source, trace_id)
       VALUES ('E1', 'F1', 'cam', 'frame.captured', $1, $1, 'capture', 'abc'),
              ('E2', 'F2', 'cam', 'frame.captured', $2, $2, 'capture', 'abc')`,
      [new Date(t0), new Date(t0 + 2000)],
    );
    await pool.query(
      `INSERT INTO ${schema}.frame_metadata (frame_id, captured_at, camera_id, state, first_event_at, last_event_at)
       VALUES ('F1', $1, 'cam', 'completed', $1, $2), ('F2', $2, 'cam', 'captured', $2, $2)`,
      [new Date(t0), new Date(t0 + 2000)],
    );

    // The same 001 file: its checksum still matches.
    expect((await migrate({ pool, schema })).applied).toEqual([{ version: 2, name: 'partitioned_storage' }]);
    const { rows: parts } = await pool.query(
      `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`,
      [`${schema}.frame_events`],
    );
    const names = parts.map((r) => r.relname);
    expect(names).toContain('frame_events_p20240501_0000');
    expect(names).toContain('frame_events_p20240502_0000');
    const { rows } = await pool.query(`SELECT tableoid::regclass::text AS part, frame_id FROM ${schema}.frame_events ORDER BY frame_id`);
    expect(rows.map((r) => [r.part.split('.').pop(), r.frame_id])).toEqual([
      ['frame_events_p20240501_0000', 'F1'],
      ['frame_events_p20240502_0000', 'F2'],
    ]);
    const meta = await pool.query(`SELECT frame_id, state, total_ms FROM ${schema}.frame_metadata ORDER BY frame_id`);
    expect(meta.rows).toEqual([
      { frame_id: 'F1', state: 'completed', total_ms: 2000 },
      { frame_id: 'F2', state: 'captured', total_ms: null },
    ]);
    const storage = await pool.query(`SELECT kind, partition_interval::text AS iv FROM ${schema}.detektr_storage`);
    expect(storage.rows).toEqual([{ kind: 'native', iv: '1 day' }]);
  });

  it('takes the partition interval as an option and names partitions by their UTC start', async () => {
    const schema = newSchema();
    await migrate({ pool, schema, partitionInterval: '6 hours' });
    await pool.query(`SELECT ${schema}.ensure_partitions(ARRAY['2024-05-01T13:30:00Z'::timestamptz])`);
    const { rows } = await pool.query(
      `SELECT pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = 'frame_metadata_p20240501_1200'`,
      [schema],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].bound).toMatch(/FROM \('2024-05-01 12:00:00\+00'\) TO \('2024-05-01 18:00:00\+00'\)/);
  });

  it('refuses TimescaleDB storage where the extension is not available, and a bad interval', async () => {
    await expect(migrate({ pool, schema: newSchema(), storage: 'timescaledb' })).rejects.toThrow(
      /002_partitioned_storage\.sql failed: .*timescaledb/,
    );
    await expect(migrate({ pool, schema: newSchema(), partitionInterval: '10 minutes' })).rejects.toThrow(/between 1 hour and 31 days/);
  });
});

describe('pg helpers', () => {
  it('rejects an invalid schema name, naming it', () => {
    expect(() => createPool(DATABASE_URL, { schema: 'Bad-Name' })).toThrow(InvalidInputError);
    expect(() => createPool(DATABASE_URL, { schema: 'Bad-Name' })).toThrow(/"Bad-Name"/);
    expect(() => createPool(DATABASE_URL, { schema: 'x'.repeat(64) })).toThrow(InvalidInputError);
  });

  it('keeps options from the URL next to the search_path', async () => {
    const schema = newSchema();
    const url = new URL(DATABASE_URL);
    url.searchParams.set('options', '-c work_mem=8MB');
    const scoped = createPool(url.toString(), { schema });
    try {
      const { rows } = await scoped.query('SHOW search_path');
      expect(rows[0].search_path).toBe(`"${schema}"`);
      expect((await scoped.query('SHOW work_mem')).rows[0].work_mem).toBe('8MB');
      expect((await scoped.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('30s');
    } finally {
      await scoped.end();
    }
  });

  it('ensureDatabase creates a missing database once', async () => {
    const name = `detektr_t_${rand()}`;
    const url = new URL(DATABASE_URL);
    url.pathname = `/${name}`;
    try {
      expect(await ensureDatabase(url.toString())).toBe(true);
      expect(await ensureDatabase(url.toString())).toBe(false);
      const { rowCount } = await pool.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      expect(rowCount).toBe(1);
    } finally {
      await pool.query(`DROP DATABASE IF EXISTS ${name}`);
    }
  });

  it('never puts the password of the URL in an error', async () => {
    const err = await ensureDatabase('postgres://bob:s3cret-pw@127.0.0.1:1/somedb', { connectionTimeoutMs: 1000 }).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.message).toContain('bob:***@127.0.0.1:1');
    expect(err.message).not.toContain('s3cret-pw');
  });
});
