import Table from 'cli-table3';
import { Command } from 'commander';
import { shardSetOf } from '../src/bus/shards.js';
import { closeRedis, createRedis, redisTlsFiles } from '../src/bus/redis.js';
import { parseDuration } from '../src/config/parse-value.js';
import { InvalidInputError } from '../src/domain/errors.js';
import { resolveBackends } from '../src/embedded/resolve-backends.js';
import { validate, type CheckStatus } from '../src/ops/validate.js';
import { createPool } from '../src/store/pg.js';
import { traceExportPlan } from '../src/telemetry/trace-exporters.js';
import { initTracing } from '../src/telemetry/tracing.js';
import { resolveConfig, withConfigOptions } from './common.js';

/** Exit codes for cron and monitoring: 0 healthy, 1 a check failed, 3 warnings only. */
export const VALIDATE_EXIT: Record<CheckStatus, number> = { ok: 0, fail: 1, warn: 3 };

export function validateCommand(): Command {
  const cmd = new Command('validate')
    .description(
      'check the pipeline: Redis, streams and groups, lag, processors, schema, recent frames per camera, dead letters, trace exporter; exit 0 ok, 1 fail, 3 warnings only',
    )
    .option('--e2e', 'also send a probe frame through the whole pipeline and wait for its completed journey')
    .option('--e2e-timeout <duration>', 'how long the probe may take', '15s')
    .option('--max-lag <n>', 'undelivered entries per group above which to warn', '1000')
    .option('--max-frame-age <duration>', "warn when a camera's newest stored frame is older than this", '60s')
    .option('--json', 'print the report as JSON: { status, durationMs, checks: [{ check, status, detail }] }');
  withConfigOptions(cmd, { dataDir: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const loaded = resolveConfig(flags);
    const { config } = loaded;
    const maxLag = Number(flags.maxLag);
    if (!Number.isInteger(maxLag) || maxLag < 0) throw new InvalidInputError(`--max-lag "${flags.maxLag}" must be a non-negative integer`);
    const maxFrameAgeMs = parseDuration(String(flags.maxFrameAge), '--max-frame-age');
    const e2eTimeoutMs = parseDuration(String(flags.e2eTimeout), '--e2e-timeout');
    // No URLs set: the backends of a running `detektr run` (run.json in --data-dir).
    const backends = await resolveBackends(loaded);
    const exportPlan = traceExportPlan();
    const tracing = initTracing('detektr-validate');
    const redis = createRedis({
      url: backends.redisUrl,
      tls: redisTlsFiles(config),
      name: 'detektr:validate',
      commandTimeoutMs: 1500,
    });
    let redisError: unknown;
    redis.on('error', (err) => (redisError = err)); // reported by the redis check, with its cause
    const pool = createPool(backends.databaseUrl, { schema: config.dbSchema, max: 2, connectionTimeoutMs: 1500 });
    pool.on('error', () => undefined);
    try {
      const report = await validate({
        redis,
        pool,
        shards: shardSetOf(config),
        tracer: tracing.tracer,
        redisError: () => redisError,
        processorTtlMs: config.processorTtl,
        maxLag,
        maxFrameAgeMs,
        otlpEndpoint: exportPlan.exporters.includes('otlp') ? exportPlan.endpoint : undefined,
        otlpProtocol: exportPlan.protocol,
        hwaccel: config.hwaccel,
        e2e: flags.e2e ? { timeoutMs: e2eTimeoutMs, payloadTtlMs: config.payloadTtl, streamMaxLen: config.streamMaxLen } : undefined,
      });
      if (flags.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      else {
        const table = new Table({
          head: ['check', 'status', 'detail'],
          style: { head: [], border: [] },
          wordWrap: true,
          colWidths: [34, 8, 70],
        });
        for (const c of report.checks) table.push([c.check, c.status.toUpperCase(), c.detail]);
        process.stdout.write(
          `${table.toString()}\n${report.status.toUpperCase()} (${report.checks.length} checks in ${report.durationMs} ms)\n`,
        );
      }
      process.exitCode = VALIDATE_EXIT[report.status];
    } finally {
      await tracing.shutdown();
      await closeRedis(redis);
      await pool.end().catch(() => undefined);
      await backends.close();
    }
  });
}
