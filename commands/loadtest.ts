import Table from 'cli-table3';
import { Command } from 'commander';
import { createElement } from 'react';
import { shardSetOf } from '../src/bus/shards.js';
import { closeRedis, createRedis, redisTlsFiles } from '../src/bus/redis.js';
import { parseDuration } from '../src/config/parse-value.js';
import { InvalidInputError } from '../src/domain/errors.js';
import { resolveBackends } from '../src/embedded/resolve-backends.js';
import { DEFAULT_GATES, runLoadtest, type LoadtestProgress, type LoadtestReport } from '../src/ops/loadtest.js';
import { createPool } from '../src/store/pg.js';
import { createLogger } from '../src/telemetry/logger.js';
import { initTracing } from '../src/telemetry/tracing.js';
import { resolveConfig, withConfigOptions } from './common.js';

function num(flag: string, raw: unknown, min: number, max: number): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new InvalidInputError(`${flag} "${raw}" must be a number between ${min} and ${max}`);
  return n;
}

function render(r: LoadtestReport): string {
  const t = new Table({ style: { head: [], border: [] } });
  t.push(
    { 'frames sent': String(r.sent) },
    { completed: String(r.completed) },
    { failed: String(r.failed) },
    {
      dropped: `${r.dropped}${
        Object.keys(r.droppedByReason).length
          ? ` (${Object.entries(r.droppedByReason)
              .map(([k, v]) => `${k}: ${v}`)
              .join(', ')})`
          : ''
      }`,
    },
    { unaccounted: String(r.unaccounted) },
    { 'send errors': String(r.sendErrors) },
    { 'throughput fps': String(r.throughputFps) },
    { 'latency ms p50/p95/p99': `${r.latencyMs.p50 ?? '-'} / ${r.latencyMs.p95 ?? '-'} / ${r.latencyMs.p99 ?? '-'}` },
    { 'journey completeness %': String(r.journeyCompletenessPct) },
  );
  if (r.shards.length > 1)
    t.push({ 'per shard sent/completed': r.shards.map((s) => `s${s.shard}: ${s.sent}/${s.completed} (${s.cameras} cam)`).join(', ') });
  const g = new Table({ head: ['gate', 'value', 'threshold', 'result'], style: { head: [], border: [] } });
  for (const x of r.gates)
    g.push([
      x.gate,
      String(x.value),
      (x.gate.includes('completeness') ? '> ' : x.gate === 'failed %' ? '<= ' : '< ') + x.threshold,
      x.pass ? 'PASS' : 'FAIL',
    ]);
  return `loadtest ${r.runId}: ${r.config.cameras} camera(s) x ${r.config.fps} fps for ${r.config.durationMs / 1000} s, ${r.config.payloadBytes} B payloads\n${t.toString()}\n${g.toString()}\n${r.pass ? 'PASS' : 'FAIL'}\n`;
}

export function loadtestCommand(): Command {
  const cmd = new Command('loadtest')
    .description(
      'drive the running pipeline with synthetic frames and report throughput, loss, latency and journey completeness; exit 1 when a gate fails',
    )
    .option('--fps <n>', 'frames per second per camera', '30')
    .option('--cameras <n>', 'synthetic cameras', '4')
    .option('--duration <duration>', 'how long to send (e.g. 30s, 5m; a bare number is seconds)', '30s')
    .option('--payload-kb <n>', 'payload size per frame in KiB', '60')
    .option('--drain-timeout <duration>', 'how long to wait for frames in flight after sending', '30s')
    .option('--max-loss <pct>', 'gate: unaccounted frames, % of sent (must be below)', String(DEFAULT_GATES.maxLossPct))
    .option(
      '--min-completeness <pct>',
      'gate: complete journeys with one trace, % of sent (must be above)',
      String(DEFAULT_GATES.minCompletenessPct),
    )
    .option('--max-p95 <ms>', 'gate: end-to-end latency p95 in ms (must be below)', String(DEFAULT_GATES.maxP95Ms))
    .option('--max-failed <pct>', 'gate: frames that failed processing, % of sent', String(DEFAULT_GATES.maxFailedPct))
    .option('--json', 'print the report as JSON');
  withConfigOptions(cmd, { dataDir: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const loaded = resolveConfig(flags);
    const { config } = loaded;
    const fps = num('--fps', flags.fps, 0.1, 1000);
    const cameras = num('--cameras', flags.cameras, 1, 256);
    if (!Number.isInteger(cameras)) throw new InvalidInputError(`--cameras "${flags.cameras}" must be an integer`);
    const durationRaw = String(flags.duration);
    const durationMs = /^\d+(\.\d+)?$/.test(durationRaw) ? Number(durationRaw) * 1000 : parseDuration(durationRaw, '--duration');
    if (durationMs < 1000 || durationMs > 86_400_000) throw new InvalidInputError(`--duration "${durationRaw}" must be between 1s and 24h`);
    const payloadBytes = Math.round(num('--payload-kb', flags.payloadKb, 0.25, 8192) * 1024);
    const gates = {
      maxLossPct: num('--max-loss', flags.maxLoss, 0, 100),
      minCompletenessPct: num('--min-completeness', flags.minCompleteness, 0, 100),
      maxP95Ms: num('--max-p95', flags.maxP95, 0, 3_600_000),
      maxFailedPct: num('--max-failed', flags.maxFailed, 0, 100),
    };
    const logger = createLogger({ component: 'loadtest', level: config.logLevel });
    // No URLs set: the backends of a running `detektr run` (run.json in --data-dir).
    const backends = await resolveBackends(loaded);
    const tracing = initTracing('detektr-loadtest');
    const redis = createRedis({ url: backends.redisUrl, tls: redisTlsFiles(config), name: 'detektr:loadtest', logger });
    const pool = createPool(backends.databaseUrl, { schema: config.dbSchema, max: 2 });
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    // Ink on a TTY; plain progress lines on stderr otherwise (CI, pipes, cron).
    let onProgress = (p: LoadtestProgress) => {
      process.stderr.write(
        `${(p.elapsedMs / 1000).toFixed(0).padStart(4)} s ${p.phase.padEnd(8)} sent ${p.sent}  completed ${p.completed}  failed ${p.failed}  dropped ${p.dropped}  in flight ${p.inFlight}  capture lag ${p.captureLag ?? '-'}\n`,
      );
    };
    let view: { unmount(): void } | undefined;
    if (process.stderr.isTTY && !flags.json) {
      const { render } = await import('ink');
      const { LoadtestView } = await import('./loadtest-view.js');
      const app = render(createElement(LoadtestView, { durationMs }), { stdout: process.stderr, exitOnCtrlC: false, patchConsole: false });
      view = app;
      onProgress = (p) => app.rerender(createElement(LoadtestView, { p, durationMs }));
    }
    try {
      const report = await runLoadtest({
        redis,
        pool,
        shards: shardSetOf(config),
        tracer: tracing.tracer,
        fps,
        cameras,
        durationMs,
        payloadBytes,
        payloadTtlMs: config.payloadTtl,
        streamMaxLen: config.streamMaxLen,
        drainTimeoutMs: parseDuration(String(flags.drainTimeout), '--drain-timeout'),
        gates,
        signal: abort.signal,
        onProgress,
      });
      view?.unmount();
      process.stdout.write(flags.json ? JSON.stringify(report, null, 2) + '\n' : render(report));
      process.exitCode = report.pass ? 0 : 1;
    } finally {
      view?.unmount();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await tracing.shutdown();
      await closeRedis(redis);
      await pool.end();
      await backends.close();
    }
  });
}
