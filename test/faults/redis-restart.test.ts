import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateRedis, type PrivateRedis } from '../helpers/private-redis.js';
import { waitFor } from '../helpers/redis.js';
import { FaultPipeline, report, sleep, type WorkerName } from './fault-pipeline.js';

const WORKERS: WorkerName[] = ['buffer', 'process', 'store'];

/**
 * Redis killed (it keeps nothing on disk here) and started empty 3 s later, under 30 fps x 4
 * cameras. What was in Redis is gone: frames in the streams, their payloads, lifecycle
 * events not yet stored, the groups, the registry. The workers must notice, recreate their
 * groups, re-register, and go on without a crash or a busy loop; every frame sent after
 * the restart must be accounted for, and the frames lost in Redis are counted (loadtest's
 * unaccounted).
 */
describe('Redis restart under load', () => {
  let redis: PrivateRedis;
  let p: FaultPipeline;
  beforeAll(async () => {
    redis = await startPrivateRedis();
    p = new FaultPipeline({ label: 'redis_restart', redisUrl: redis.url });
  });
  afterAll(async () => {
    await p?.close();
    await redis?.stop();
  });

  it('workers reconnect by themselves, none crashes or spins; frames after the restart all complete', async () => {
    await p.migrate();
    await p.startAll();
    const load = p.loadtest([
      '--fps',
      '30',
      '--cameras',
      '4',
      '--duration',
      '20s',
      '--payload-kb',
      '8',
      '--drain-timeout',
      '20s',
      '--max-p95',
      '600000',
    ]);
    await sleep(5000);

    const cpuBefore = WORKERS.map((w) => p.cpuSeconds(w));
    const down = Date.now();
    await redis.kill();
    await sleep(3000);
    const cpuDown = WORKERS.map((w, i) => (p.cpuSeconds(w) - cpuBefore[i]) / ((Date.now() - down) / 1000));
    await redis.start();
    const restarted = Date.now();

    // Frames captured after the restart complete again: the pipeline has recovered.
    await waitFor(
      'a frame captured after the restart completed',
      async () => {
        const { rows } = await p.pool.query("SELECT 1 FROM frame_metadata WHERE state = 'completed' AND captured_at > $1 LIMIT 1", [
          new Date(restarted),
        ]);
        return rows.length > 0;
      },
      30_000,
      100,
    );
    const recoveryS = (Date.now() - restarted) / 1000;

    const r = await load.report;
    const acc = await p.accounting();
    const { rows } = await p.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM frame_metadata WHERE captured_at > $1 AND state NOT IN ('completed', 'failed', 'dropped')",
      [new Date(restarted)],
    );
    const unfinishedAfterRestart = rows[0].n;
    report('Redis restart (3 s down, empty after)', {
      sent: r.sent,
      sendErrors: r.sendErrors,
      completed: r.completed,
      failed: r.failed,
      dropped: r.dropped,
      droppedByReason: r.droppedByReason,
      lostInRedis: r.unaccounted,
      unfinishedAfterRestart,
      duplicates: acc.duplicates,
      recoveryAfterRestartS: recoveryS,
      cpuWhileDownPctOfCore: Object.fromEntries(WORKERS.map((w, i) => [w, Math.round(cpuDown[i] * 1000) / 10])),
    });

    for (const w of WORKERS) expect(p.alive(w), `${w} still running`).toBe(true);
    // Reconnecting is backoff, not a busy loop.
    for (const [i, w] of WORKERS.entries()) expect(cpuDown[i], `${w} CPU while Redis was down`).toBeLessThan(0.25);
    expect(unfinishedAfterRestart).toBe(0);
    expect(acc.duplicates).toBe(0);
    expect(acc.withoutReason).toBe(0);
    // Lost: at most what was in flight in Redis around the outage (3 s down + ~1 s in flight).
    expect(r.unaccounted + r.sendErrors).toBeLessThan(5 * 120);
    // The rest completed, or (a loaded machine falling behind 120 fps) was shed by the
    // buffer's backpressure: dropped with its reason, the documented answer to overload.
    for (const reason of Object.keys(r.droppedByReason)) expect(reason).toMatch(/^backpressure: shed /);
    expect(r.completed + r.dropped).toBeGreaterThan(r.sent - 5 * 120);
    expect(recoveryS).toBeLessThan(15);
    // The processor re-registered itself in the new, empty Redis.
    expect(await p.redis.zcard(p.keys.processors)).toBe(1);
  }, 180_000);
});
