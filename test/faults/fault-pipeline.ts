import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { expect } from 'vitest';
import { groupLag } from '../../src/bus/group-lag.js';
import { GROUPS, redisKeys, type RedisKeys } from '../../src/bus/keys.js';
import { deleteKeysWithPrefix } from '../../src/bus/redis.js';
import type { LoadtestReport } from '../../src/ops/loadtest.js';
import { runDetektr, spawnDetektr, type Spawned } from '../helpers/cli.js';
import { TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { REDIS_URL, uniquePrefix, waitFor } from '../helpers/redis.js';

/**
 * The pipeline as an operator runs it (`detektr store | buffer | process`, separate
 * processes), with the knobs a fault test turns: kill -9 and restart any worker, measure
 * each worker's input backlog, its CPU, and account for every frame a loadtest sent.
 */
export type WorkerName = 'buffer' | 'process' | 'store' | 'capture';

export interface FaultPipelineOptions {
  label: string;
  redisUrl?: string;
  databaseUrl?: string;
  /** Processor run by `process` (default sample). */
  processor?: string;
  env?: NodeJS.ProcessEnv;
  /** Arguments of `detektr capture` (cameras, fps...), for tests that capture. */
  captureArgs?: string[];
}

export interface Accounting {
  /** Frames per final state (completed, failed, dropped) and not final (captured, queued, processing). */
  byState: Record<string, number>;
  /** Frames whose capability was completed more than once. */
  duplicates: number;
  /** Dropped or failed frames without a reason. */
  withoutReason: number;
  /** Frames with no terminal state. */
  unfinished: number;
}

const ARGS: Record<WorkerName, (o: FaultPipelineOptions) => string[]> = {
  buffer: () => ['buffer'],
  process: (o) => ['process', '--processor', o.processor ?? 'sample', '--id', o.processor ?? 'sample', '--concurrency', '4'],
  store: () => ['store'],
  capture: (o) => ['capture', ...(o.captureArgs ?? [])],
};

export class FaultPipeline {
  readonly prefix = uniquePrefix('fault');
  readonly schema: string;
  readonly keys: RedisKeys;
  readonly env: NodeJS.ProcessEnv;
  readonly redis: Redis;
  readonly pool: pg.Pool;
  readonly workers = new Map<WorkerName, Spawned>();
  private readonly all: Spawned[] = [];
  private readonly processor: string;
  private readonly databaseUrl: string;

  constructor(private readonly o: FaultPipelineOptions) {
    this.schema = uniqueSchema(o.label);
    this.keys = redisKeys(this.prefix);
    this.processor = o.processor ?? 'sample';
    const redisUrl = o.redisUrl ?? REDIS_URL;
    this.databaseUrl = o.databaseUrl ?? TEST_DATABASE_URL;
    this.env = {
      REDIS_URL: redisUrl,
      DATABASE_URL: this.databaseUrl,
      DETEKTR_PREFIX: this.prefix,
      DETEKTR_DB_SCHEMA: this.schema,
      DETEKTR_METRICS_PORT: '0',
      DETEKTR_LOG_LEVEL: 'warn',
      // Short enough for a test to see recovery in seconds; the docs give the defaults' figures.
      DETEKTR_CLAIM_IDLE: '2s',
      DETEKTR_HEARTBEAT_INTERVAL: '300ms',
      DETEKTR_PROCESSOR_TTL: '3s',
      DETEKTR_BLOCK_TIME: '200ms',
      ...o.env,
    };
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, retryStrategy: () => 200 });
    this.redis.on('error', () => undefined); // Redis may be restarted on purpose
    this.pool = new pg.Pool({ connectionString: this.databaseUrl, max: 2, options: `-c search_path=${this.schema}` });
    this.pool.on('error', () => undefined); // PostgreSQL may be stopped on purpose
  }

  async migrate(): Promise<void> {
    const r = await runDetektr(['migrate'], this.env, 60_000);
    if (r.code !== 0) throw new Error(`migrate failed: ${r.stderr}`);
  }

  start(name: WorkerName): Spawned {
    const w = spawnDetektr(ARGS[name](this.o), this.env);
    this.workers.set(name, w);
    this.all.push(w);
    return w;
  }

  async startAll(): Promise<void> {
    for (const name of ['store', 'buffer', 'process'] as const) this.start(name);
    await waitFor('the processor registered', async () => (await this.redis.zcard(this.keys.processors)) >= 1, 30_000);
    await new Promise((r) => setTimeout(r, 600)); // the buffer refreshes its registry view every 250 ms
  }

  async kill9(name: WorkerName): Promise<void> {
    const w = this.workers.get(name)!;
    w.proc.kill('SIGKILL');
    await w.exited;
  }

  /** Worker input still to handle: the group's lag + pending (buffer, store) or the ready stream's length (process). */
  async backlog(name: WorkerName): Promise<number> {
    if (name === 'process') return this.redis.xlen(this.keys.ready(this.processor));
    if (name === 'capture') throw new Error('capture has no input stream');
    const stream = name === 'buffer' ? this.keys.captured : this.keys.events;
    const g = (await groupLag(this.redis, stream)).find((x) => x.group === GROUPS[name]);
    return g ? (g.lag ?? 0) + g.pending : 0;
  }

  /**
   * Seconds from `since` until the worker's backlog is back to normal (at most `normal`
   * entries), polled every 100 ms.
   */
  async recoveredAfter(name: WorkerName, since: number, normal: number, timeoutMs = 60_000): Promise<number> {
    await waitFor(`${name} caught up`, async () => (await this.backlog(name)) <= normal, timeoutMs, 100);
    return (Date.now() - since) / 1000;
  }

  /** CPU seconds (user + system) a worker has used so far. */
  cpuSeconds(name: WorkerName): number {
    const stat = readFileSync(`/proc/${this.workers.get(name)!.proc.pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  }

  alive(name: WorkerName): boolean {
    const p = this.workers.get(name)!.proc;
    return p.exitCode === null && p.signalCode === null;
  }

  /** `detektr loadtest`, started now; resolves with its JSON report. */
  loadtest(args: string[], timeoutMs = 300_000): { proc: Spawned; report: Promise<LoadReport> } {
    const proc = spawnDetektr(['loadtest', ...args, '--json'], this.env);
    this.all.push(proc);
    const timer = setTimeout(() => proc.proc.kill('SIGKILL'), timeoutMs);
    const report = proc.exited.then((code) => {
      clearTimeout(timer);
      try {
        return { code, ...(JSON.parse(proc.stdout()) as LoadtestReport) };
      } catch {
        throw new Error(`loadtest exited ${code} without a report: ${proc.stderr().slice(-2000)}`);
      }
    });
    report.catch(() => undefined); // awaited by the test, maybe only after a fault it injects
    return { proc, report };
  }

  /** The fate of every frame in this pipeline's schema. */
  async accounting(): Promise<Accounting> {
    const states = await this.pool.query<{ state: string; n: number }>(
      'SELECT state, count(*)::int AS n FROM frame_metadata GROUP BY state',
    );
    const byState = Object.fromEntries(states.rows.map((r) => [r.state, r.n]));
    const dup = await this.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM (SELECT frame_id, capability FROM frame_events WHERE type = 'processing.completed'
         GROUP BY frame_id, capability HAVING count(DISTINCT event_id) > 1) d`,
    );
    const noReason = await this.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM frame_metadata m WHERE (m.state = 'dropped' AND m.dropped_reason IS NULL)
          OR (m.state = 'failed' AND NOT EXISTS (SELECT 1 FROM processing_stages s WHERE s.frame_id = m.frame_id AND s.state = 'failed' AND s.error IS NOT NULL))`,
    );
    const unfinished = ['captured', 'queued', 'processing'].reduce((n, s) => n + (byState[s] ?? 0), 0);
    return { byState, duplicates: dup.rows[0].n, withoutReason: noReason.rows[0].n, unfinished };
  }

  async counters(): Promise<Record<string, string>> {
    return this.redis.hgetall(this.keys.counters);
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((w) => w.stop(5000)));
    await deleteKeysWithPrefix(this.redis, this.prefix).catch(() => undefined);
    this.redis.disconnect();
    await this.pool.query(`DROP SCHEMA IF EXISTS "${this.schema}" CASCADE`).catch(() => undefined);
    await this.pool.end();
  }
}

/** `detektr loadtest --json`'s report, with its exit code. */
export type LoadReport = LoadtestReport & { code: number | null };

/** Every frame sent ended completed, failed or dropped with a reason; none twice, none left. */
export function expectEveryFrameAccounted(r: LoadReport, acc: Accounting, sent: number): void {
  expect(r.sendErrors).toBe(0);
  expect(r.sent).toBe(sent);
  expect(r.unaccounted).toBe(0);
  expect(r.completed + r.failed + r.dropped).toBe(r.sent);
  expect(acc.unfinished).toBe(0);
  expect(acc.duplicates).toBe(0);
  expect(acc.withoutReason).toBe(0);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One line per fault for the reliability table, on stdout (vitest shows it). */
export function report(fault: string, row: Record<string, unknown>): void {
  process.stdout.write(`FAULT ${fault}: ${JSON.stringify(row)}\n`);
}
