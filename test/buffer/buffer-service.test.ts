import { afterEach, describe, expect, it } from 'vitest';
import { testRedis, waitFor, type TestRedis } from '../helpers/redis.js';
import { byType, harness, slowProcessor, type Harness } from './harness.js';

describe('BufferService: the coordinator wires intake, dispatch and the view (real Redis)', () => {
  let h: Harness;
  let t: TestRedis;
  afterEach(async () => {
    await h.close();
    await t.cleanup();
  });

  it('takes frames in and hands them off through the lanes once a backlog forms; close() is idempotent and ends run()', async () => {
    t = await testRedis('coordinator');
    h = harness(t);
    const seen: string[] = [];
    h.runtime(slowProcessor('a', ['x'], 100, seen), { capacity: 2 });
    const buffer = h.buffer();
    await waitFor('a registered', async () => (await buffer.liveProcessors()).length === 1);
    const frames = await Promise.all(Array.from({ length: 12 }, () => h.publish({ capabilities: ['x'] })));
    await waitFor('every frame processed', async () => byType(await h.events(), 'processing.completed').length === 12, 30_000);
    expect(new Set(seen)).toEqual(new Set(frames.map((f) => f.frameId)));
    // Both paths were taken: straight from intake while a had room, through the normal lane after.
    const waits = await h.metrics.registry.getSingleMetricAsString('detektr_buffer_wait_seconds');
    for (const lane of ['direct', 'normal']) expect(waits).toMatch(new RegExp(`_count\\{[^}]*lane="${lane}"[^}]*\\} [1-9]`));
    const status = await buffer.status();
    expect(status.lanes).toEqual({ high: 0, normal: 0, low: 0 });
    expect(buffer.pressure.level).toBe('normal');
    const ran = buffer.run();
    expect(buffer.run()).toBe(ran);
    await Promise.all([buffer.close(), buffer.close()]);
    await ran; // resolves once both loops stopped
    await buffer.close();
  });
});
