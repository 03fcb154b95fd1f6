import { existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LoadedConfig } from '../config/load-config.js';
import { ConnectionError } from '../domain/errors.js';
import { EmbeddedPostgres, isAlive } from './postgres.js';
import { EmbeddedRedis } from './resp-server.js';
import { createScripting } from './lua.js';

/**
 * Which backends a command uses. A URL the user set (flag, environment or config file)
 * always wins; with none, `detektr run` starts embedded ones (an in-process Redis-protocol
 * server, PGlite in `<dataDir>/pgdata`) and announces them in `<dataDir>/run.json`, so
 * one-shot commands (trace, status, validate, loadtest) reach the same data while it runs, and
 * open the PGlite files themselves after it stopped.
 */

export interface RunInfo {
  pid: number;
  redisUrl: string;
  databaseUrl: string;
  startedAt: string;
}

export type BackendKind = 'external' | 'embedded' | 'run';

export function pgDataDir(dataDir: string): string {
  return join(resolve(dataDir), 'pgdata');
}

export function runInfoPath(dataDir: string): string {
  return join(resolve(dataDir), 'run.json');
}

/** The run.json of a `detektr run` that is still alive; undefined when none (or stale). */
export function readRunInfo(dataDir: string): RunInfo | undefined {
  let info: RunInfo;
  try {
    info = JSON.parse(readFileSync(runInfoPath(dataDir), 'utf8')) as RunInfo;
  } catch {
    return undefined;
  }
  if (typeof info?.pid !== 'number' || !isAlive(info.pid) || info.pid === process.pid) return undefined;
  return info;
}

function writeRunInfo(dataDir: string, info: RunInfo): void {
  const path = runInfoPath(dataDir);
  const tmp = `${path}.${process.pid}.tmp`;
  // 0600: with an external database beside an embedded Redis, its URL (maybe with a password) is in here
  writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path); // readers never see half a file
}

function removeRunInfo(dataDir: string): void {
  try {
    const info = JSON.parse(readFileSync(runInfoPath(dataDir), 'utf8')) as RunInfo;
    if (info.pid === process.pid) unlinkSync(runInfoPath(dataDir));
  } catch {
    // gone already
  }
}

export interface RunBackends {
  redisUrl: string;
  databaseUrl: string;
  redis: BackendKind;
  postgres: BackendKind;
  /** For the log line: what runs where. */
  describe(): Record<string, string>;
  /** Removes run.json, stops the embedded servers (after the caller closed its clients). */
  close(): Promise<void>;
}

/**
 * For `detektr run`: the URLs to use, starting an embedded backend for each URL the user
 * did not set, and writing `<dataDir>/run.json` while they run.
 */
export async function startRunBackends(loaded: LoadedConfig, opts: { onError?: (err: Error) => void } = {}): Promise<RunBackends> {
  const { config, sources } = loaded;
  const dataDir = resolve(config.dataDir);
  const embedRedis = sources.redisUrl === 'default';
  const embedPostgres = sources.databaseUrl === 'default';
  let redis: EmbeddedRedis | undefined;
  let pg: EmbeddedPostgres | undefined;
  const closeAll = async () => {
    removeRunInfo(dataDir);
    await pg?.close().catch(() => {});
    await redis?.close().catch(() => {});
  };
  if (embedRedis || embedPostgres) {
    const other = readRunInfo(dataDir);
    if (other) {
      throw new ConnectionError(`another detektr run (pid ${other.pid}) is using ${dataDir}; stop it, or give this one its own --data-dir`);
    }
    mkdirSync(dataDir, { recursive: true });
  }
  try {
    if (embedRedis) {
      redis = new EmbeddedRedis({ scripting: createScripting(), onError: opts.onError });
      await redis.start();
    }
    if (embedPostgres) {
      pg = await EmbeddedPostgres.open({ dataDir: pgDataDir(dataDir) });
      await pg.listen();
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  const redisUrl = redis?.url ?? config.redisUrl;
  const databaseUrl = pg?.url ?? config.databaseUrl;
  if (redis || pg) writeRunInfo(dataDir, { pid: process.pid, redisUrl, databaseUrl, startedAt: new Date().toISOString() });
  let closing: Promise<void> | undefined;
  return {
    redisUrl,
    databaseUrl,
    redis: redis ? 'embedded' : 'external',
    postgres: pg ? 'embedded' : 'external',
    describe: () => ({
      redis: redis ? `embedded (in-process, ${redis.url}, in memory)` : 'external ($REDIS_URL or config)',
      postgres: pg ? `embedded (PGlite, ${pg.dataDir}, served on ${pg.url})` : 'external ($DATABASE_URL or config)',
      ...(redis || pg ? { run_json: runInfoPath(dataDir) } : {}),
    }),
    close: () => (closing ??= closeAll()),
  };
}

export interface ResolvedDatabase {
  url: string;
  kind: BackendKind;
  /** Closes the in-process database when one was opened (kind 'embedded'). */
  close(): Promise<void>;
}

/**
 * The database of a one-shot command: the user's URL when set; else the running
 * `detektr run`'s (run.json); else the embedded files in `<dataDir>/pgdata`, opened in
 * this process (close() afterwards). With none of these: an error when `required`, else
 * the default URL (a local PostgreSQL, whose absence the command reports itself).
 */
async function resolveDatabaseOf(loaded: LoadedConfig, required: boolean): Promise<ResolvedDatabase> {
  const { config, sources } = loaded;
  const none = async () => {};
  if (sources.databaseUrl !== 'default') return { url: config.databaseUrl, kind: 'external', close: none };
  const dataDir = resolve(config.dataDir);
  const run = readRunInfo(dataDir);
  if (run) return { url: run.databaseUrl, kind: 'run', close: none };
  if (!existsSync(pgDataDir(dataDir))) {
    if (!required) return { url: config.databaseUrl, kind: 'external', close: none };
    throw new ConnectionError(`no DATABASE_URL and no embedded data in ${config.dataDir}: run \`detektr run\` first or set DATABASE_URL`);
  }
  let pg: EmbeddedPostgres;
  try {
    pg = await EmbeddedPostgres.open({ dataDir: pgDataDir(dataDir) });
  } catch (err) {
    // A `detektr run` may have started between our look at run.json and the lock.
    const started = readRunInfo(dataDir);
    if (started) return { url: started.databaseUrl, kind: 'run', close: none };
    throw err;
  }
  const url = await pg.listen();
  return { url, kind: 'embedded', close: () => pg.close() };
}

/** The database for a one-shot command that cannot do without one (trace); see resolveBackends. */
export function resolveDatabase(loaded: LoadedConfig): Promise<ResolvedDatabase> {
  return resolveDatabaseOf(loaded, true);
}

/**
 * Redis for a one-shot command: the user's URL when set; else the running `detektr run`'s
 * embedded server (run.json); else the default URL (the embedded server keeps its data in
 * memory only, so there is nothing to open once `run` stopped).
 */
export function resolveRedisUrl(loaded: LoadedConfig): { url: string; kind: BackendKind } {
  const { config, sources } = loaded;
  if (sources.redisUrl !== 'default') return { url: config.redisUrl, kind: 'external' };
  const run = readRunInfo(resolve(config.dataDir));
  return run ? { url: run.redisUrl, kind: 'run' } : { url: config.redisUrl, kind: 'external' };
}

export interface ResolvedBackends {
  redisUrl: string;
  redis: BackendKind;
  databaseUrl: string;
  postgres: BackendKind;
  /** Closes what was opened in this process (embedded PostgreSQL files). */
  close(): Promise<void>;
}

/**
 * The one resolver of every one-shot command (trace, status, validate, loadtest): a URL
 * the user set wins; else the backends of the `detektr run` using `--data-dir`; else its
 * embedded database files. `requireDatabase`: with no database at all, fail (trace: there
 * is nothing to ask) rather than try the default URL.
 */
export async function resolveBackends(loaded: LoadedConfig, opts: { requireDatabase?: boolean } = {}): Promise<ResolvedBackends> {
  const redis = resolveRedisUrl(loaded);
  const db = await resolveDatabaseOf(loaded, opts.requireDatabase ?? false);
  return { redisUrl: redis.url, redis: redis.kind, databaseUrl: db.url, postgres: db.kind, close: () => db.close() };
}
