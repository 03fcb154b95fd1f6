import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateRedis, type PrivateRedis } from '../helpers/private-redis.js';
import { waitFor } from '../helpers/redis.js';
import { FaultPipeline, report, sleep } from './fault-pipeline.js';

const MAXLEN = 300;
const TTL_MS = 3000;

/**
 * The buffer is not running while 30 fps x 4 cameras are published: the captured stream
 * stays within its MAXLEN (approximate trimming: whole nodes of 100 entries), Redis memory
 * levels off instead of growing, payloads expire after their TTL. When the buffer starts,
 * the frames trimmed unread are counted (`trimmed:<stream>`), and every frame left in the
 * stream ends with a final state: sent = finished + counted as trimmed.
 */
describe('bounds under a consumer that stops', () => {
  let redis: PrivateRedis;
  let p: FaultPipeline;
  beforeAll(async () => {
    redis = await startPrivateRedis();
    p = new FaultPipeline({
      label: 'bounds',
      redisUrl: redis.url,
      processor: 'motion',
      env: { DETEKTR_STREAM_MAXLEN: String(MAXLEN), DETEKTR_PAYLOAD_TTL: `${TTL_MS}ms` },
    });
  });
  afterAll(async () => {
    await p?.close();
    await redis?.stop();
  });

  it('streams stay within MAXLEN, memory levels off, payloads expire, and what was trimmed is counted', async () => {
    await p.migrate();
    p.start('store');
    const load = p.loadtest(['--fps', '30', '--cameras', '4', '--duration', '12s', '--payload-kb', '30', '--drain-timeout', '1s']);
    const samples: { t: number; mem: number; len: number }[] = [];
    const t0 = Date.now();
    while (load.proc.proc.exitCode === null) {
      samples.push({ t: Date.now() - t0, mem: await redis.usedMemory(), len: await p.redis.xlen(p.keys.captured) });
      await sleep(250);
    }
    const r = await load.report;
    const maxLen = Math.max(...samples.map((s) => s.len));
    // Payloads live TTL_MS: from 5 s on, the key count and the stream are both at their plateau.
    const early = samples.filter((s) => s.t >= 5000 && s.t < 8000).map((s) => s.mem);
    const late = samples.filter((s) => s.t >= 8000 && s.t < 12_000).map((s) => s.mem);
    const earlyMean = early.reduce((a, b) => a + b, 0) / early.length;
    const lateMax = Math.max(...late);

    await sleep(TTL_MS + 500);
    const payloads = (await p.redis.keys(`${p.prefix}frame:*`)).length;
    const waiting = await p.redis.xlen(p.keys.captured);

    // Now the consumers come.
    p.start('buffer');
    p.start('process');
    const trimmedKey = `trimmed:${p.keys.captured}`;
    await waitFor('the trimmed frames counted', async () => Number((await p.counters())[trimmedKey] ?? 0) > 0, 30_000);
    await waitFor(
      'every frame left in the stream finished',
      async () => {
        const a = await p.accounting();
        return r.sent - a.unfinished === waiting && a;
      },
      60_000,
      250,
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: sent ${r.sent}, left ${waiting}, ${JSON.stringify(await p.accounting())}, ${JSON.stringify(await p.counters())}`,
      );
    });
    const acc = await p.accounting();
    const trimmed = Number((await p.counters())[trimmedKey]);
    report('consumer stopped (stream MAXLEN 300, payload TTL 3 s)', {
      sent: r.sent,
      maxStreamLen: maxLen,
      memEarlyMeanMiB: +(earlyMean / 2 ** 20).toFixed(1),
      memLateMaxMiB: +(lateMax / 2 ** 20).toFixed(1),
      payloadsLeftAfterTtl: payloads,
      leftInStream: waiting,
      trimmedCounted: trimmed,
      byState: acc.byState,
    });

    expect(r.sent).toBe(12 * 30 * 4);
    expect(maxLen).toBeLessThanOrEqual(MAXLEN + 100);
    expect(lateMax).toBeLessThan(earlyMean * 1.25);
    expect(payloads).toBe(0);
    // Every frame sent is either finished (from what was left) or counted as trimmed.
    expect(trimmed).toBe(r.sent - waiting);
    expect(acc.unfinished).toBe(trimmed);
    expect((acc.byState.completed ?? 0) + (acc.byState.failed ?? 0) + (acc.byState.dropped ?? 0)).toBe(waiting);
    expect(acc.withoutReason).toBe(0);
  }, 180_000);
});
