import type { RedisClient } from '../bus/redis.js';
import type { Tracer } from '@opentelemetry/api';
import type { Config } from '../config/load-config.js';
import { redactedConfig } from '../config/load-config.js';
import { checkLayout, shardSetOf, type ShardSet } from '../bus/shards.js';
import { closeRedis, createBlockingRedis, createRedis, redisTlsFiles } from '../bus/redis.js';
import { InvalidInputError } from '../domain/errors.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { initTracing, type Tracing } from '../telemetry/tracing.js';
import { startHttpServer, type Readiness, type Route } from '../telemetry/http-server.js';

export interface WorkerContext {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  tracing: Tracing;
  tracer: Tracer;
  /** The pipeline's key sets, one per shard (src/bus/shards.ts). */
  shards: ShardSet;
  /** Connections made through these are closed by the host at exit. */
  redis(name?: string): RedisClient;
  blockingRedis(name?: string): RedisClient;
  /** One blocking connection per shard (a blocked read holds its connection). */
  blockingPerShard(name?: string): RedisClient[];
}

export interface Worker {
  run(): Promise<void>;
  close(): Promise<void>;
  readiness?(): Readiness | Promise<Readiness>;
  routes?: Route[];
}

export interface WorkerHostOptions {
  component: string;
  config: Config;
  defaultMetricsPort: number;
  create(ctx: WorkerContext): Promise<Worker> | Worker;
  /** Longest a graceful stop may take before the process exits anyway. */
  stopTimeoutMs?: number;
}

/**
 * Runs a long-lived worker: logging, tracing, metrics and health endpoints, and a clean
 * stop on SIGINT/SIGTERM (the worker finishes or hands back its in-flight frames).
 * Resolves with the process exit code.
 */
export async function hostWorker(opts: WorkerHostOptions): Promise<number> {
  const { config, component } = opts;
  const logger = createLogger({ component, level: config.logLevel });
  const tracing = initTracing(`detektr-${component}`);
  const metrics = createMetrics(component);
  const conns: RedisClient[] = [];
  const ctx: WorkerContext = {
    config,
    logger,
    metrics,
    tracing,
    tracer: tracing.tracer,
    shards: shardSetOf(config),
    redis: (name = component) => {
      const c = createRedis({ url: config.redisUrl, tls: redisTlsFiles(config), name: `detektr:${name}`, logger });
      conns.push(c);
      return c;
    },
    blockingRedis: (name = component) => {
      const c = createBlockingRedis({
        url: config.redisUrl,
        tls: redisTlsFiles(config),
        name: `detektr:${name}`,
        logger,
        blockMs: config.blockTime,
      });
      conns.push(c);
      return c;
    },
    blockingPerShard: (name = component) =>
      ctx.shards.all.map((k) => ctx.blockingRedis(ctx.shards.count > 1 ? `${name}:s${k.shard}` : name)),
  };
  logger.info('starting', { config: redactedConfig(config) });
  await agreeOnLayout(config, ctx);
  const worker = await opts.create(ctx);
  const http = await startHttpServer({
    host: config.metricsHost,
    port: config.metricsPort ?? opts.defaultMetricsPort,
    registry: metrics.registry,
    readiness: async () => {
      const redisOk = conns.every((c) => c.status === 'ready');
      const own = (await worker.readiness?.()) ?? { ready: true, checks: {} };
      return { ready: redisOk && own.ready, checks: { redis: redisOk ? 'ok' : 'not connected', ...own.checks } };
    },
    routes: worker.routes,
  });
  logger.info('listening', { metrics: `http://${config.metricsHost}:${http.port}/metrics`, port: http.port });

  let stopping: Promise<void> | undefined;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn('second signal: exiting now', { signal });
      process.exit(130);
    }
    logger.info('stopping', { signal });
    const deadline = setTimeout(() => {
      logger.error('graceful stop timed out; exiting', { timeout_ms: opts.stopTimeoutMs ?? 15_000 });
      process.exit(1);
    }, opts.stopTimeoutMs ?? 15_000);
    deadline.unref();
    stopping = worker.close();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  let code = 0;
  try {
    await worker.run();
  } catch (err) {
    logger.error('worker failed', { error: err });
    code = 1;
  }
  await stopping;
  await worker.close();
  await http.close();
  await tracing.shutdown();
  await closeRedis(...conns);
  logger.info('stopped', { exit_code: code });
  return code;
}

/**
 * Checks this worker's shard layout against the pipeline's (a mismatch throws: the worker
 * must not start). Redis not answering yet is no reason to stop: the worker's own
 * connections retry, and the check is skipped.
 */
async function agreeOnLayout(config: Config, ctx: WorkerContext): Promise<void> {
  const redis = createRedis({ url: config.redisUrl, tls: redisTlsFiles(config), name: 'detektr:layout', logger: ctx.logger });
  try {
    await checkLayout(redis, ctx.shards);
  } catch (err) {
    if (err instanceof InvalidInputError) throw err;
    ctx.logger.warn('could not check the shard layout (Redis not answering); going on', { error: err });
  } finally {
    await closeRedis(redis);
  }
}
