import { connect } from 'node:net';
import type { Tracer } from '@opentelemetry/api';
import { Cluster } from 'ioredis';
import type { RedisClient } from '../bus/redis.js';
import { clusterState, redisNodes } from '../bus/cluster-nodes.js';
import type pg from 'pg';
import { ProcessorRegistry } from '../buffer/registry.js';
import { groupLag } from '../bus/group-lag.js';
import { COUNTER_FIELDS, GROUPS, type RedisKeys } from '../bus/keys.js';
import type { ShardSet } from '../bus/shards.js';
import { publishFrame } from '../bus/publish-frame.js';
import { sleep } from '../bus/backoff.js';
import { redactSecrets } from '../config/redact-text.js';
import { loadMigrations, schemaVersion } from '../store/migrate.js';
import { findJourney } from '../trace/journey.js';
import { SYNTHETIC_JPEG_SIZE, syntheticJpeg } from './synthetic-jpeg.js';
import { connectionCause, redisReady } from './connection-cause.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  check: string;
  status: CheckStatus;
  detail: string;
}

export interface ValidateOptions {
  redis: RedisClient;
  pool: pg.Pool;
  shards: ShardSet;
  tracer: Tracer;
  processorTtlMs: number;
  /** Lag (undelivered entries) above which a group is a warning. */
  maxLag: number;
  /** A camera whose newest frame is older than this is a warning. */
  maxFrameAgeMs: number;
  /** OTLP endpoint to probe, when traces are exported. */
  otlpEndpoint?: string;
  /** Its protocol: grpc gets a connection check, the HTTP ones an empty export. */
  otlpProtocol?: string;
  e2e?: { timeoutMs: number; payloadTtlMs: number; streamMaxLen: number };
  /** Longest any single check may take (the whole run stays fast for cron). */
  checkTimeoutMs?: number;
  /** The Redis connection's latest error event, for the real cause of a failed connection. */
  redisError?: () => unknown;
  /** Capture's hwaccel setting: adds the `hwaccel` line (devices this machine has, the one chosen). */
  hwaccel?: string;
}

export interface ValidateReport {
  status: CheckStatus;
  checks: CheckResult[];
  durationMs: number;
}

const worst = (statuses: CheckStatus[]): CheckStatus => (statuses.includes('fail') ? 'fail' : statuses.includes('warn') ? 'warn' : 'ok');
const ago = (ms: number) =>
  ms < 1000 ? `${Math.round(ms)} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60_000)} min`;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
    }),
  ]);
}

async function redisChecks(o: ValidateOptions): Promise<CheckResult[]> {
  const info = await o.redis.info('server');
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  const out: CheckResult[] = [
    {
      check: 'redis',
      status: Number(version.split('.')[0]) >= 7 ? 'ok' : 'warn',
      detail: `reachable, version ${version}${Number(version.split('.')[0]) >= 7 ? '' : ' (XAUTOCLAIM needs >= 6.2; 7 recommended)'}`,
    },
  ];

  out.push(await layoutCheck(o));
  const { global } = o.shards;
  const registry = new ProcessorRegistry(o.redis, global, o.processorTtlMs);
  const now = Date.now();
  const all = await o.redis.zrange(global.processors, '0', '-1', 'WITHSCORES');
  const live = await registry.live(now);
  const stale: string[] = [];
  for (let i = 0; i < all.length; i += 2) {
    const age = now - Number(all[i + 1]);
    if (age > o.processorTtlMs && age < 10 * o.processorTtlMs) stale.push(`${all[i]} (last heartbeat ${ago(age)} ago)`);
  }
  const caps = new Map<string, string[]>();
  for (const p of live) for (const c of p.capabilities) caps.set(c, [...(caps.get(c) ?? []), p.id]);
  if (!live.length)
    out.push({
      check: 'processors',
      status: 'fail',
      detail: `no live processor${stale.length ? `; stale: ${stale.join(', ')}` : ''} (start detektr process)`,
    });
  else
    out.push({
      check: 'processors',
      status: stale.length ? 'warn' : 'ok',
      detail: [...caps].map(([c, ids]) => `${c}: ${ids.join(', ')}`).join('; ') + (stale.length ? `; stale: ${stale.join(', ')}` : ''),
    });

  const expected: [string, string][] = o.shards.all.flatMap((k): [string, string][] => [
    [k.captured, GROUPS.buffer],
    [k.events, GROUPS.store],
    ...live.map((p): [string, string] => [k.ready(p.id), GROUPS.processor]),
  ]);
  for (const [stream, group] of expected) {
    const lags = await groupLag(o.redis, stream);
    const g = lags.find((l) => l.group === group);
    if (!g) {
      out.push({
        check: `group ${stream} ${group}`,
        status: 'fail',
        detail:
          lags.length || (await o.redis.exists(stream))
            ? `stream has no consumer group "${group}"`
            : 'stream does not exist (no worker has run against this prefix?)',
      });
      continue;
    }
    const lagText = g.lag === null ? 'lag unknown' : `lag ${g.lag}`;
    out.push({
      check: `group ${stream} ${group}`,
      status: (g.lag ?? 0) > o.maxLag ? 'warn' : 'ok',
      detail: `${lagText}, pending ${g.pending}${(g.lag ?? 0) > o.maxLag ? ` (over ${o.maxLag})` : ''}`,
    });
  }

  // Counter fields name their stream, so the shards' hashes merge without clashes.
  const counters: Record<string, string> = Object.assign({}, ...(await Promise.all(o.shards.all.map((k) => o.redis.hgetall(k.counters)))));
  const snapshotKey = global.validateSnapshot;
  const previous = await o.redis.hgetall(snapshotKey);
  const grown: string[] = [];
  let total = 0;
  for (const [k, v] of Object.entries(counters)) {
    if (!k.startsWith(COUNTER_FIELDS.deadLetterPrefix) && !k.startsWith(COUNTER_FIELDS.trimmedPrefix)) continue;
    total += Number(v);
    const before = Number(previous[k] ?? 0);
    if (Number(v) > before) grown.push(`${k} +${Number(v) - before}`);
  }
  if (Object.keys(counters).length) await o.redis.hset(snapshotKey, counters);
  out.push({
    check: 'dead-letter',
    status: grown.length ? 'warn' : 'ok',
    detail: grown.length ? `grew since the last validate: ${grown.join(', ')}` : `${total} in total, no growth since the last validate`,
  });
  return out;
}

/**
 * A cluster's state and each of its nodes (a single server is the `redis` line). A node
 * the cluster marks failed is a warning while every slot is served (its replica took
 * over: redundancy lost), a failure when the cluster itself is down.
 */
async function redisNodeChecks(o: ValidateOptions, timeoutMs: number): Promise<CheckResult[]> {
  const [state, nodes] = await Promise.all([clusterState(o.redis, timeoutMs), redisNodes(o.redis, timeoutMs)]);
  const ok = state?.state === 'ok';
  const out: CheckResult[] = [
    {
      check: 'redis cluster',
      status: ok ? 'ok' : 'fail',
      detail: `cluster_state ${state?.state ?? 'unknown'}, ${state?.slotsAssigned ?? 0} of 16384 slots assigned${state?.slotsFail ? `, ${state.slotsFail} failing` : ''}, ${nodes.length} nodes`,
    },
  ];
  for (const n of nodes) {
    const parts = [n.role, ...(n.slots ? [`slots ${n.slots}`] : []), ...(n.version ? [`version ${n.version}`] : [])];
    out.push({
      check: `redis node ${n.address}`,
      status: n.status === 'ok' ? 'ok' : ok ? 'warn' : 'fail',
      detail: n.status === 'ok' ? parts.join(', ') : `${parts.join(', ')}: ${redactSecrets(n.status)}`,
    });
  }
  return out;
}

async function postgresChecks(o: ValidateOptions): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const [version, files] = await Promise.all([schemaVersion(o.pool), loadMigrations()]);
  const latest = files.at(-1)?.version ?? 0;
  out.push({
    check: 'schema',
    status: version >= latest ? 'ok' : 'fail',
    detail: version >= latest ? `version ${version}, current` : `version ${version}, ${latest} available: run detektr migrate`,
  });
  if (version === 0) return out;
  const { rows } = await o.pool.query<{ camera_id: string; last: Date }>(
    `SELECT camera_id, max(captured_at) AS last FROM frame_metadata WHERE captured_at > now() - interval '24 hours' GROUP BY camera_id ORDER BY camera_id`,
  );
  if (!rows.length) out.push({ check: 'cameras', status: 'warn', detail: 'no frame stored in the last 24 h' });
  for (const r of rows) {
    const age = Date.now() - r.last.getTime();
    out.push({ check: `camera ${r.camera_id}`, status: age > o.maxFrameAgeMs ? 'warn' : 'ok', detail: `last frame ${ago(age)} ago` });
  }
  return out;
}

async function grpcExporterCheck(endpoint: string, timeoutMs: number): Promise<CheckResult> {
  const u = new URL(endpoint.includes('://') ? endpoint : `http://${endpoint}`);
  const port = Number(u.port || 4317);
  try {
    await new Promise<void>((resolve, reject) => {
      const sock = connect({ host: u.hostname, port, timeout: timeoutMs }, () => (sock.end(), resolve()));
      sock.on('timeout', () => (sock.destroy(), reject(new Error(`no answer within ${timeoutMs} ms`))));
      sock.on('error', reject);
    });
    return { check: 'trace exporter', status: 'ok', detail: `${redactSecrets(endpoint)} (grpc) accepts connections` };
  } catch (err) {
    return { check: 'trace exporter', status: 'fail', detail: `${redactSecrets(endpoint)} (grpc) unreachable: ${connectionCause(err)}` };
  }
}

async function exporterCheck(endpoint: string, timeoutMs: number, protocol?: string): Promise<CheckResult> {
  if (protocol === 'grpc') return grpcExporterCheck(endpoint, timeoutMs);
  const url = endpoint.endsWith('/v1/traces') ? endpoint : `${endpoint.replace(/\/+$/, '')}/v1/traces`;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"resourceSpans":[]}',
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { check: 'trace exporter', status: res.status < 500 ? 'ok' : 'fail', detail: `${redactSecrets(url)} answered ${res.status}` };
  } catch (err) {
    const cause = connectionCause((err as Error).cause ?? err);
    return { check: 'trace exporter', status: 'fail', detail: `${redactSecrets(url)} unreachable: ${cause}` };
  }
}

/** The pipeline's recorded shard layout (src/bus/shards.ts) against this command's. */
async function layoutCheck(o: ValidateOptions): Promise<CheckResult> {
  const { count, tagged } = o.shards.layout;
  const mine = `${count}${tagged ? ' tagged' : ''}`;
  const recorded = await o.redis.hget(o.shards.global.layout, 'shards');
  const what = tagged ? `${count} shard${count > 1 ? 's' : ''} (${o.shards.all.map((k) => `{${k.tag}}`).join(' ')})` : '1 shard';
  if (recorded === null) return { check: 'shards', status: 'ok', detail: `${what}; no worker has recorded a layout yet` };
  if (recorded !== mine)
    return {
      check: 'shards',
      status: 'fail',
      detail: `the pipeline's workers run with shards=${recorded.split(' ')[0]}, this check with ${count}: set DETEKTR_SHARDS to match`,
    };
  return { check: 'shards', status: 'ok', detail: `${what}, as the workers recorded` };
}

async function e2eCheck(o: ValidateOptions, e2e: NonNullable<ValidateOptions['e2e']>, keys: RedisKeys, name: string): Promise<CheckResult> {
  const check = name;
  const started = Date.now();
  const probe = await publishFrame(
    { redis: o.redis, keys, tracer: o.tracer, payloadTtlMs: e2e.payloadTtlMs, streamMaxLen: e2e.streamMaxLen },
    { cameraId: 'validate-probe', jpeg: syntheticJpeg(1024), ...SYNTHETIC_JPEG_SIZE, priority: 9, data: { probe: true } },
  );
  let last = 'not stored yet';
  while (Date.now() - started < e2e.timeoutMs) {
    const j = await findJourney(o.pool, probe.frameId);
    if (j && (j.state === 'completed' || j.state === 'failed' || j.state === 'dropped')) {
      const traceIds = new Set([j.traceId]);
      const complete = j.events.some((e) => e.type === 'frame.queued') && j.events.some((e) => e.type === 'processing.started');
      if (j.state !== 'completed')
        return {
          check,
          status: 'fail',
          detail: `probe ${probe.frameId} ended ${j.state}${j.droppedReason ? `: ${j.droppedReason}` : ''}`,
        };
      if (!complete || j.traceId !== probe.traceId || traceIds.size !== 1)
        return { check, status: 'fail', detail: `probe ${probe.frameId} completed with an incomplete journey or trace` };
      return {
        check,
        status: 'ok',
        detail: `probe ${probe.frameId} completed in ${Date.now() - started} ms through ${j.stages.map((s) => s.processorId).join(', ')}; trace ${j.traceId}`,
      };
    }
    if (j) last = `state ${j.state}`;
    await sleep(100);
  }
  return { check, status: 'fail', detail: `probe ${probe.frameId} not completed within ${e2e.timeoutMs} ms (${last})` };
}

/** Loads node-av only when asked: the other checks do not need it. */
async function hwaccelCheck(setting: string): Promise<CheckResult> {
  const { hwaccelReport } = await import('../capture/hwaccel.js');
  return { check: 'hwaccel', ...hwaccelReport(setting) };
}

/** Runs every check concurrently, each bounded in time; the report's status is the worst. */
export async function validate(o: ValidateOptions): Promise<ValidateReport> {
  const started = performance.now();
  const limit = o.checkTimeoutMs ?? 1500;
  const guarded = async (name: string, fn: () => Promise<CheckResult[]>): Promise<CheckResult[]> => {
    try {
      return await withTimeout(fn(), limit, name);
    } catch (err) {
      return [{ check: name, status: 'fail', detail: redactSecrets(connectionCause(err)) }];
    }
  };
  const groups = await Promise.all([
    // Wait for the connection first: a command queued behind one that never comes up only says "Command timed out".
    guarded('redis', async () => {
      await redisReady(o.redis, Math.round(limit * 0.9), o.redisError);
      return redisChecks(o);
    }),
    o.redis instanceof Cluster
      ? guarded('redis cluster', async () => {
          await redisReady(o.redis, Math.round(limit * 0.9), o.redisError);
          return redisNodeChecks(o, Math.round(limit * 0.5));
        })
      : Promise.resolve([]),
    guarded('postgres', () => postgresChecks(o)),
    o.otlpEndpoint ? exporterCheck(o.otlpEndpoint, limit, o.otlpProtocol).then((r) => [r]) : Promise.resolve([]),
  ]);
  const checks = groups.flat();
  if (o.hwaccel) checks.push(await hwaccelCheck(o.hwaccel));
  if (o.e2e) {
    const ready = !checks.some((c) => c.status === 'fail' && (c.check === 'redis' || c.check === 'postgres' || c.check === 'processors'));
    // One probe per shard: each shard's buffer, processors and store must carry a frame.
    const e2e = o.e2e;
    const probes = o.shards.all.map((keys) => {
      const name = o.shards.count > 1 ? `e2e probe s${keys.shard}` : 'e2e probe';
      return ready
        ? e2eCheck(o, e2e, keys, name).catch((err: unknown) => ({
            check: name,
            status: 'fail' as const,
            detail: redactSecrets((err as Error).message),
          }))
        : Promise.resolve<CheckResult>({ check: name, status: 'fail', detail: 'skipped: Redis, PostgreSQL or processors are failing' });
    });
    checks.push(...(await Promise.all(probes)));
  }
  return { status: worst(checks.map((c) => c.status)), checks, durationMs: Math.round(performance.now() - started) };
}
