import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres.js';
import { expectEveryFrameAccounted, FaultPipeline, report, sleep } from './fault-pipeline.js';

const OUTAGE_MS = 60_000;

/**
 * PostgreSQL stopped (immediate: connections cut as in a crash) for 60 s under 30 fps x 4
 * cameras: the store keeps its events in the stream (unacked), waits with backoff, and
 * catches up once the database is back; every frame ends accounted for, none twice.
 */
describe('PostgreSQL stopped for 60 s under load', () => {
  let db: PrivatePostgres;
  let p: FaultPipeline;
  beforeAll(async () => {
    db = await startPrivatePostgres();
    p = new FaultPipeline({ label: 'dbdown', databaseUrl: db.url });
  });
  afterAll(async () => {
    await p?.close();
    await db?.destroy();
  });

  it('events wait in the stream, the store catches up, nothing lost', async () => {
    await p.migrate();
    await p.startAll();
    const load = p.loadtest(
      ['--fps', '30', '--cameras', '4', '--duration', '20s', '--payload-kb', '8', '--drain-timeout', '120s', '--max-p95', '600000'],
      240_000,
    );
    await sleep(3000);
    let normal = 0;
    for (let i = 0; i < 5; i++, await sleep(100)) normal = Math.max(normal, await p.backlog('store'));
    normal = Math.max(2 * normal, 200);

    const cpu0 = p.cpuSeconds('store');
    const stopped = Date.now();
    await db.stop();
    await sleep(OUTAGE_MS / 2);
    const waitingMidway = await p.backlog('store');
    await sleep(OUTAGE_MS / 2 - (Date.now() - stopped - OUTAGE_MS / 2));
    const storeCpu = (p.cpuSeconds('store') - cpu0) / ((Date.now() - stopped) / 1000);
    await db.start();
    const restarted = Date.now();
    const caughtUpS = await p.recoveredAfter('store', restarted, normal, 90_000);

    const r = await load.report;
    const acc = await p.accounting();
    report('PostgreSQL stopped 60 s', {
      sent: r.sent,
      sendErrors: r.sendErrors,
      completed: r.completed,
      failed: r.failed,
      dropped: r.dropped,
      droppedByReason: r.droppedByReason,
      unaccounted: r.unaccounted,
      eventsWaitingMidway: waitingMidway,
      catchUpAfterRestartS: caughtUpS,
      storeCpuWhileDownPctOfCore: Math.round(storeCpu * 1000) / 10,
      duplicates: acc.duplicates,
    });

    expect(p.alive('store')).toBe(true);
    expect(waitingMidway).toBeGreaterThan(1000); // the events waited in Redis, unacked
    expect(storeCpu).toBeLessThan(0.25);
    expectEveryFrameAccounted(r, acc, 20 * 30 * 4);
    expect(caughtUpS).toBeLessThan(45);
  }, 300_000);
});
