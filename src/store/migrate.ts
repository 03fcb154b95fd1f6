import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { packageRoot } from '../config/package-info.js';
import { DetektrError } from '../domain/errors.js';
import { schemaIdent, withClient } from './pg.js';

export interface MigrationRef {
  version: number;
  name: string;
}

export interface MigrateResult {
  /** Applied by this run (empty on a dry run). */
  applied: MigrationRef[];
  /** Highest applied version after this run (0: none). */
  current: number;
  /** Still to apply: on a dry run, what a real run would apply; otherwise empty. */
  pending: MigrationRef[];
}

export type StorageKind = 'native' | 'timescaledb';

export interface MigrateOptions {
  pool: pg.Pool;
  schema: string;
  migrationsDir?: string;
  dryRun?: boolean;
  /**
   * Which storage path migration 002 builds: TimescaleDB hypertables, native range
   * partitioning, or `auto` (TimescaleDB when the extension is installed or preloaded).
   * Only read when 002 is applied; recorded in detektr_storage.
   */
  storage?: 'auto' | StorageKind;
  /** Partition / chunk width (a PostgreSQL interval, 1 hour .. 31 days); default 1 day. */
  partitionInterval?: string;
}

interface MigrationFile extends MigrationRef {
  file: string;
  sql: string;
  checksum: string;
}

const FILE_RE = /^(\d{3,})_([a-z0-9_]+)\.sql$/;

/** `<package root>/migrations`, found from this module whether it runs from src/ or dist/src/. */
export function defaultMigrationsDir(): string {
  return join(packageRoot(), 'migrations');
}

export async function loadMigrations(dir: string = defaultMigrationsDir()): Promise<MigrationFile[]> {
  const files: MigrationFile[] = [];
  for (const file of (await readdir(dir)).sort()) {
    const m = FILE_RE.exec(file);
    if (!m) continue;
    const sql = await readFile(join(dir, file), 'utf8');
    files.push({ version: Number(m[1]), name: m[2], file, sql, checksum: checksum(sql) });
  }
  files.sort((a, b) => a.version - b.version);
  for (let i = 1; i < files.length; i++) {
    if (files[i].version === files[i - 1].version) {
      throw new DetektrError(`migrations ${files[i - 1].file} and ${files[i].file} have the same version`);
    }
  }
  return files;
}

/**
 * Apply pending migrations, each in its own transaction together with its
 * schema_migrations row. Every transaction takes a per-schema advisory lock first and then
 * re-reads what is applied, so concurrent runs queue up and never apply one twice.
 * Migration files must not contain BEGIN/COMMIT or CREATE INDEX CONCURRENTLY.
 */
export async function migrate(opts: MigrateOptions): Promise<MigrateResult> {
  const schema = schemaIdent(opts.schema);
  const files = await loadMigrations(opts.migrationsDir);
  const applied: MigrationRef[] = [];
  return withClient(opts.pool, async (client) => {
    for (;;) {
      await client.query('BEGIN');
      try {
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`detektr:migrate:${opts.schema}`]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
        await client.query(`SET LOCAL search_path TO ${schema}`);
        // Settings the migrations read with current_setting('detektr.*', true).
        await client.query("SELECT set_config('detektr.storage', $1, true), set_config('detektr.partition_interval', $2, true)", [
          opts.storage ?? 'auto',
          opts.partitionInterval ?? '',
        ]);
        await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
          version integer PRIMARY KEY,
          name text NOT NULL,
          checksum text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now())`);
        const done = await appliedChecksums(client);
        verifyChecksums(files, done);
        const pending = files.filter((f) => !done.has(f.version));
        const current = Math.max(0, ...done.keys());
        if (opts.dryRun || pending.length === 0) {
          // A dry run leaves no trace, not even the schema.
          await client.query(opts.dryRun ? 'ROLLBACK' : 'COMMIT');
          return { applied, current, pending: opts.dryRun ? pending.map(ref) : [] };
        }
        const next = pending[0];
        try {
          await client.query(next.sql);
        } catch (err) {
          throw new DetektrError(`migration ${next.file} failed: ${(err as Error).message}`, { cause: err });
        }
        await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
          next.version,
          next.name,
          next.checksum,
        ]);
        await client.query('COMMIT');
        applied.push(ref(next));
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    }
  });
}

/** Highest applied migration version of the schema (or of the pool's search_path); 0 when none. */
export async function schemaVersion(db: pg.Pool | pg.PoolClient, schema?: string): Promise<number> {
  const table = schema === undefined ? 'schema_migrations' : `${schemaIdent(schema)}.schema_migrations`;
  const { rows } = await db.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [table]);
  if (!rows[0].exists) return 0;
  const res = await db.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${table}`);
  return res.rows[0].v ?? 0;
}

async function appliedChecksums(client: pg.PoolClient): Promise<Map<number, string>> {
  const { rows } = await client.query<{ version: number; checksum: string }>(
    'SELECT version, checksum FROM schema_migrations ORDER BY version',
  );
  return new Map(rows.map((r) => [r.version, r.checksum]));
}

function verifyChecksums(files: MigrationFile[], done: Map<number, string>): void {
  for (const f of files) {
    const sum = done.get(f.version);
    if (sum !== undefined && sum !== f.checksum) {
      throw new DetektrError(
        `migration ${f.file} was changed after it was applied (checksum ${f.checksum.slice(0, 12)}… != applied ${sum.slice(0, 12)}…); ` +
          'add a new migration instead of editing an applied one',
      );
    }
  }
}

/** Line endings are normalised so a Windows checkout (CRLF) does not look like an edit. */
function checksum(sql: string): string {
  return createHash('sha256').update(sql.replace(/\r\n/g, '\n')).digest('hex');
}

function ref(m: MigrationRef): MigrationRef {
  return { version: m.version, name: m.name };
}
