import { Command } from 'commander';
import { createElement } from 'react';
import { shardSetOf } from '../src/bus/shards.js';
import { closeRedis, createRedis, redisTlsFiles } from '../src/bus/redis.js';
import { parseDuration } from '../src/config/parse-value.js';
import { resolveBackends } from '../src/embedded/resolve-backends.js';
import { statusSnapshot, type StatusSnapshot } from '../src/ops/status-snapshot.js';
import { createPool } from '../src/store/pg.js';
import { resolveConfig, withConfigOptions } from './common.js';

function plain(s: StatusSnapshot): string {
  const lines = [`detektr status ${s.at}`, 'cameras:'];
  for (const c of s.cameras) lines.push(`  ${c.cameraId}  ${c.fps.toFixed(1)} fps  last frame ${Math.round(c.lastFrameAgeMs)} ms ago`);
  lines.push('queues:');
  for (const q of s.queues) lines.push(`  ${q.stream} ${q.group}  lag ${q.lag ?? '?'}  pending ${q.pending}`);
  if (s.shards.length > 1)
    lines.push(`shards: ${s.shards.map((x) => `s${x.shard} waiting ${x.captured} dead-letter ${x.deadLetter}`).join('; ')}`);
  lines.push('processors:');
  for (const p of s.processors)
    lines.push(
      `  ${p.id} [${p.capabilities.join(',')}] queued ${p.queued}/${p.capacity} ${p.live ? `heartbeat ${p.heartbeatAgeMs} ms ago` : 'GONE'}`,
    );
  lines.push(`dead-letter: ${s.deadLetter}; drops in 5 min: ${JSON.stringify(s.recentDrops)}`);
  if (s.cluster) {
    lines.push(`nodes: cluster_state ${s.cluster.state}`);
    for (const n of s.cluster.nodes) lines.push(`  ${n.address} ${n.role}${n.slots ? ` slots ${n.slots}` : ''} ${n.status}`);
  }
  for (const e of s.errors) lines.push(`error: ${e}`);
  return lines.join('\n') + '\n';
}

export function statusCommand(): Command {
  const cmd = new Command('status')
    .description('live view of cameras, queues, processors, dead letters and drops (a terminal UI on a TTY; one snapshot otherwise)')
    .option('--json', 'print one snapshot as JSON and exit')
    .option('--interval <duration>', 'refresh period of the live view', '1s');
  withConfigOptions(cmd, { dataDir: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const loaded = resolveConfig(flags);
    const { config } = loaded;
    const intervalMs = parseDuration(String(flags.interval), '--interval');
    // No URLs set: the backends of a running `detektr run` (run.json in --data-dir).
    const backends = await resolveBackends(loaded);
    const redis = createRedis({ url: backends.redisUrl, tls: redisTlsFiles(config), name: 'detektr:status', commandTimeoutMs: 2000 });
    redis.on('error', () => undefined); // shown in the view
    const pool = createPool(backends.databaseUrl, { schema: config.dbSchema, max: 2, connectionTimeoutMs: 2000 });
    pool.on('error', () => undefined);
    const shards = shardSetOf(config);
    const load = () => statusSnapshot({ redis, pool, shards, processorTtlMs: config.processorTtl });
    try {
      if (flags.json || !process.stdout.isTTY) {
        const snap = await load();
        process.stdout.write(flags.json ? JSON.stringify(snap, null, 2) + '\n' : plain(snap));
        return;
      }
      // Ink only on a TTY, loaded on demand so one-shot use stays light.
      const { render } = await import('ink');
      const { StatusView } = await import('./status-view.js');
      const app = render(createElement(StatusView, { load, intervalMs }), { exitOnCtrlC: true });
      await app.waitUntilExit();
    } finally {
      await closeRedis(redis);
      await pool.end().catch(() => undefined);
      await backends.close();
    }
  });
}
