import { afterAll, describe, expect, it } from 'vitest';
import { expectEveryFrameAccounted, FaultPipeline, report, sleep, type WorkerName } from './fault-pipeline.js';

/**
 * kill -9 of the buffer, then the processor, then the store, one at a time, each restarted
 * after 2 s, while `detektr loadtest` sends 30 fps x 4 cameras: every frame sent ends
 * completed (or failed/dropped with a reason), no capability is completed twice for a
 * frame, and each worker catches up within seconds of its restart.
 */
describe('kill -9 of each worker under 30 fps x 4 cameras', () => {
  const p = new FaultPipeline({ label: 'kill9' });
  afterAll(() => p.close());

  it('loses no frame and duplicates none; every worker recovers', async () => {
    await p.migrate();
    await p.startAll();
    const load = p.loadtest([
      '--fps',
      '30',
      '--cameras',
      '4',
      '--duration',
      '27s',
      '--payload-kb',
      '8',
      '--drain-timeout',
      '60s',
      '--max-p95',
      '600000',
    ]);
    const recovery: Record<string, number> = {};
    await sleep(3000);
    for (const name of ['buffer', 'process', 'store'] as WorkerName[]) {
      // Normal: what the worker holds in steady state, plus a little.
      let normal = 0;
      for (let i = 0; i < 5; i++, await sleep(100)) normal = Math.max(normal, await p.backlog(name));
      normal = Math.max(2 * normal, 60);
      const killedAt = Date.now();
      await p.kill9(name);
      await sleep(2000);
      p.start(name);
      recovery[name] = await p.recoveredAfter(name, killedAt, normal);
      report(`kill -9 ${name}`, { downS: 2, recoveredAfterKillS: recovery[name], normalBacklog: normal });
      await sleep(Math.max(0, 6000 - (Date.now() - killedAt)));
    }
    const r = await load.report;
    const acc = await p.accounting();
    report('kill -9 buffer, process, store (one run)', {
      sent: r.sent,
      sendErrors: r.sendErrors,
      completed: r.completed,
      failed: r.failed,
      dropped: r.dropped,
      droppedByReason: r.droppedByReason,
      unaccounted: r.unaccounted,
      ...acc,
      recovery,
    });

    expectEveryFrameAccounted(r, acc, 27 * 30 * 4);
    // Claim idle is 2 s here: a dead consumer's entries are taken over 2-3 s after the restart.
    for (const name of ['buffer', 'process', 'store']) expect(recovery[name], name).toBeLessThan(20);
  }, 240_000);
});
