import { afterEach, describe, expect, it } from 'vitest';
import type { Waiting } from '../../src/buffer/lane-reader.js';
import { computePressure } from '../../src/buffer/pressure.js';
import { Shedder, victims } from '../../src/buffer/shedder.js';
import { byType } from './harness.js';
import { parts, type Parts } from './parts.js';

const waiting = (id: string, lane: number, capturedAt: number) => ({ id, lane, frame: { capturedAt } }) as Waiting;

describe('shedder: trims the lanes to the critical bound by policy', () => {
  it('chooses the low lane first (oldest first within it) or the oldest capture across lanes', () => {
    const windows = [[waiting('h1', 0, 5)], [waiting('n1', 1, 1), waiting('n2', 1, 7)], [waiting('l1', 2, 9), waiting('l2', 2, 3)]];
    expect(victims('lowest-priority', windows, 3).map((w) => w.id)).toEqual(['l1', 'l2', 'n1']);
    expect(victims('oldest', windows, 3).map((w) => w.id)).toEqual(['n1', 'l2', 'h1']);
    expect(victims('oldest', windows, 0)).toEqual([]);
  });

  describe('against real Redis', () => {
    let p: Parts;
    afterEach(async () => {
      await p.close();
    });

    it('sheds the excess, each frame with a frame.dropped naming policy and numbers, and counts it', async () => {
      p = await parts('shed-lowest', { pressureHigh: 1, pressureCritical: 1 });
      const high = [p.frame({ priority: 9 }), p.frame({ priority: 9 })];
      const low = [p.frame({ priority: 0 }), p.frame({ priority: 0 })];
      for (const f of high) await p.toLane('high', f);
      for (const f of low) await p.toLane('low', f);
      const pressure = computePressure({ high: 1, critical: 1 }, 4, 1, 3);
      expect(await new Shedder({ settings: p.settings, lanes: p.lanes }).shed(pressure)).toBe(3);
      expect(await p.t.redis.xlen(p.t.keys.lane('low'))).toBe(0);
      expect(await p.t.redis.xlen(p.t.keys.lane('high'))).toBe(1);
      const dropped = byType(await p.events(), 'frame.dropped');
      expect(dropped.map((e) => e.frameId)).toEqual([low[0].frameId, low[1].frameId, high[0].frameId]);
      expect(dropped[0].reason).toBe(
        'backpressure: shed (policy lowest-priority; 4 frames waiting >= critical 1 = 1 x capacity 1, and 3 more upstream)',
      );
      expect(dropped[0].data).toEqual({ policy: 'lowest-priority', priority: 0, lane: 'low' });
      const counted = await p.metrics.registry.getSingleMetricAsString('detektr_frames_dropped_total');
      expect(counted).toMatch(/reason="shed_lowest_priority"[^}]*\} 3$/m);
    });

    it('with the oldest policy sheds the oldest captures whatever their lane; nothing at or under the bound', async () => {
      p = await parts('shed-oldest', { shedPolicy: 'oldest', pressureCritical: 2, pressureHigh: 1 });
      const [a, b, c] = [p.frame({ priority: 9 }), p.frame({ priority: 9 }), p.frame({ priority: 0 })];
      await p.toLane('high', a);
      await p.toLane('high', b);
      await p.toLane('low', c);
      const shedder = new Shedder({ settings: p.settings, lanes: p.lanes });
      // Bound 2 x capacity 1: one over. Lowest-priority would shed c; oldest sheds a.
      expect(await shedder.shed(computePressure({ high: 1, critical: 2 }, 3, 1, 2))).toBe(1);
      expect(byType(await p.events(), 'frame.dropped').map((e) => e.frameId)).toEqual([a.frameId]);
      expect(await shedder.shed(computePressure({ high: 1, critical: 2 }, 2, 1, 2))).toBe(0);
      expect((await p.t.redis.xlen(p.t.keys.lane('high'))) + (await p.t.redis.xlen(p.t.keys.lane('low')))).toBe(2);
    });
  });
});
