import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAMERA_EVENT_COLUMNS, FRAME_EVENT_COLUMNS } from '../../src/store/event-columns.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `t_${randomBytes(5).toString('hex')}`;
let pool: pg.Pool;

beforeAll(async () => {
  pool = createPool(DATABASE_URL, { schema });
  await migrate({ pool, schema });
});
afterAll(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await pool.end();
});

/** The migrated table's columns that the writer must fill (no default), in table order. */
async function tableColumns(table: string): Promise<string[]> {
  const { rows } = await pool.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns
     WHERE table_schema = $1 AND table_name = $2 AND column_default IS NULL ORDER BY ordinal_position`,
    [schema, table],
  );
  return rows.map((r) => r.column_name);
}

describe('event column tables', () => {
  it('name every column of frame_events and camera_events without a default, in table order', async () => {
    expect(FRAME_EVENT_COLUMNS.map((c) => c.name)).toEqual(await tableColumns('frame_events'));
    expect(CAMERA_EVENT_COLUMNS.map((c) => c.name)).toEqual(await tableColumns('camera_events'));
  });
});
