import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openVideoSource } from '../../src/capture/video-source.js';
import { toFieldMap } from '../../src/bus/fields.js';
import { frameIdTime, newFrameId } from '../../src/domain/frame-id.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import type { FrameInput, Processor } from '../../src/process/processor.js';
import { createMotionProcessor, motionOptions, type MotionResult } from '../../src/process/processors/motion.js';
import { GrayDecoder, jpegDimensions } from '../../src/process/processors/gray-decoder.js';
import { thumbnailOf } from '../../src/process/thumbnail.js';
import { testRedis, waitFor } from '../helpers/redis.js';
import { harness, logger, type Harness } from '../buffer/harness.js';

/** Real JPEG frames from FFmpeg's lavfi sources, through openVideoSource (as capture makes them). */
async function frames(graph: string, n: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const img of openVideoSource({ url: graph, kind: 'lavfi', fps: 5 })) {
    out.push(img.jpeg);
    if (out.length === n) break;
  }
  return out;
}

const MOVING = 'testsrc2=size=640x360:rate=25';
const STILL = 'color=c=gray:size=640x360:rate=25';

function input(cameraId: string, jpeg: Buffer, at: number): FrameInput {
  const frameId = newFrameId(at);
  return {
    frameId,
    cameraId,
    capturedAt: frameIdTime(frameId),
    width: 640,
    height: 360,
    format: 'jpeg',
    sizeBytes: jpeg.length,
    priority: 5,
    payloadKey: 'x',
    capabilities: [],
    image: jpeg,
  };
}

async function run(p: Processor, cameraId: string, jpegs: Buffer[]): Promise<MotionResult[]> {
  const out: MotionResult[] = [];
  let t = Date.now() - 10_000;
  for (const j of jpegs)
    out.push(
      (await p.process(input(cameraId, j, (t += 200)), {
        processorId: 'motion',
        logger,
        options: {},
        signal: new AbortController().signal,
        attempt: 1,
      })) as MotionResult,
    );
  return out;
}

describe('motion processor on real video', () => {
  let moving: Buffer[];
  let still: Buffer[];
  beforeAll(async () => {
    [moving, still] = await Promise.all([frames(MOVING, 6), frames(STILL, 6)]);
  });

  it('decodes a JPEG to a small gray image, fast', () => {
    expect(jpegDimensions(moving[0])).toEqual({ width: 640, height: 360 });
    const dec = new GrayDecoder(160, 90);
    try {
      const g = dec.decode(still[0]);
      expect({ w: g.width, h: g.height, n: g.pixels.length, sw: g.sourceWidth }).toEqual({ w: 160, h: 90, n: 14_400, sw: 640 });
      // color=gray is luma 128 (full range), within rounding.
      expect(Math.abs(g.pixels[7200] - 128)).toBeLessThanOrEqual(3);
      const started = performance.now();
      for (let i = 0; i < 20; i++) dec.decode(moving[i % moving.length]);
      const perFrame = (performance.now() - started) / 20;
      console.log(`JPEG 640x360 -> gray 160x90: ${perFrame.toFixed(2)} ms per frame`);
      expect(perFrame).toBeLessThan(50); // ~0.5-1 ms on an idle machine; generous for a loaded CI box
      expect(() => dec.decode(Buffer.from('not a jpeg'))).toThrow(/not a JPEG/);
    } finally {
      dec.close();
    }
  });

  it('detects motion when the source moves, with score, changed-area ratio and regions inside the frame', async () => {
    const p = createMotionProcessor();
    await p.setup!({ processorId: 'motion', logger, options: {} });
    try {
      const results = await run(p, 'moving', moving);
      expect(results[0]).toMatchObject({ baseline: true, motion: false });
      for (const r of results.slice(1)) {
        expect(r.motion, JSON.stringify(r).slice(0, 200)).toBe(true);
        expect(r.baseline).toBe(false);
        expect(r.comparedTo).toMatch(/^[0-9A-Z]{26}$/);
        expect(r.changedRatio).toBeGreaterThan(0.01);
        expect(r.score).toBeGreaterThan(0);
        expect(r.regions.length).toBeGreaterThan(0);
        for (const g of r.regions) {
          expect(g.x).toBeGreaterThanOrEqual(0);
          expect(g.y).toBeGreaterThanOrEqual(0);
          expect(g.x + g.width).toBeLessThanOrEqual(640);
          expect(g.y + g.height).toBeLessThanOrEqual(360);
        }
      }
    } finally {
      await p.teardown!();
    }
  });

  it('detects none on a still source, and none where a mask hides the movement', async () => {
    const p = createMotionProcessor();
    await p.setup!({ processorId: 'motion', logger, options: {} });
    const masked = createMotionProcessor({ mask: '0,0,1,1' });
    await masked.setup!({ processorId: 'motion', logger, options: {} });
    try {
      for (const r of (await run(p, 'still', still)).slice(1)) expect(r).toMatchObject({ motion: false, changedRatio: 0, regions: [] });
      for (const r of (await run(masked, 'moving', moving)).slice(1))
        expect(r).toMatchObject({ motion: false, changedRatio: 0, regions: [] });
      // A high threshold needs more change than testsrc2 makes.
      const strict = createMotionProcessor({ threshold: '0.5' });
      await strict.setup!({ processorId: 'motion', logger, options: {} });
      const r = await run(strict, 'moving', moving);
      expect(r.slice(1).every((x) => !x.motion && x.changedRatio > 0)).toBe(true);
      await strict.teardown!();
    } finally {
      await p.teardown!();
      await masked.teardown!();
    }
  });

  it('validates its options', () => {
    expect(() => motionOptions({ threshold: '2' })).toThrow(/--opt threshold="2": must be a number between 0 and 1/);
    expect(() => motionOptions({ mask: '0,0,2,1' })).toThrow(InvalidInputError);
    expect(() => motionOptions({ sensitivity: '1' })).toThrow(/unknown --opt sensitivity/);
    expect(motionOptions({ mask: '0,0,1,0.1; 0.5,0.5,0.5,0.5', pixelThreshold: '30' })).toMatchObject({
      pixelThreshold: 30,
      mask: [
        { x: 0, y: 0, width: 1, height: 0.1 },
        { x: 0.5, y: 0.5, width: 0.5, height: 0.5 },
      ],
    });
  });

  describe('through the pipeline (real Redis: buffer + motion runtime)', () => {
    let h: Harness;
    afterAll(async () => {
      await h?.close();
      await h?.t.cleanup();
    });

    it('reports motion on the moving camera and none on the still one, in the results stream', async () => {
      h = harness(await testRedis('motion'));
      h.runtime(createMotionProcessor(), { id: 'motion-1', concurrency: 2 });
      h.buffer({ strategy: 'camera-affinity' });
      const sent = new Map<string, string>();
      for (let i = 0; i < moving.length; i++) {
        sent.set(
          (await h.publish({ cameraId: 'moving', jpeg: moving[i], width: 640, height: 360, capabilities: ['motion'] })).frameId,
          'moving',
        );
        sent.set(
          (await h.publish({ cameraId: 'still', jpeg: still[i], width: 640, height: 360, capabilities: ['motion'] })).frameId,
          'still',
        );
        await new Promise((r) => setTimeout(r, 20));
      }
      await waitFor('12 results', async () => (await h.t.redis.xlen(h.t.keys.results)) === 12, 15_000);
      const results = (await h.t.redis.xrange(h.t.keys.results, '-', '+')).map(([, f]) => toFieldMap(f));
      const byCam = (cam: string) =>
        results.filter((r) => sent.get(r.get('frame_id')!) === cam).map((r) => JSON.parse(r.get('result')!) as MotionResult);
      const m = byCam('moving');
      const s = byCam('still');
      expect(m.filter((r) => r.baseline)).toHaveLength(1);
      expect(m.filter((r) => !r.baseline).every((r) => r.motion)).toBe(true);
      expect(s.every((r) => !r.motion)).toBe(true);
      expect(results.every((r) => r.get('processor_id') === 'motion-1' && r.get('capability') === 'motion')).toBe(true);
    });

    it("uses capture's gray thumbnail when there is one, without fetching or decoding the JPEG", async () => {
      await h.close();
      await h.t.cleanup();
      h = harness(await testRedis('motion-thumb'));
      // Thumbnails as capture stores them (--thumbnail-width 320: 320x180 gray bytes at <payload>:thumb);
      // the JPEG payload is garbage, so a fallback to it would fail the frame.
      const dec = new GrayDecoder(320, 180);
      const sent: string[] = [];
      try {
        for (const jpeg of moving) {
          const f = await h.publish({
            cameraId: 'moving',
            jpeg: Buffer.from('not a jpeg'),
            width: 640,
            height: 360,
            capabilities: ['motion'],
          });
          await h.t.redis.set(`${h.t.keys.payload(f.frameId)}:thumb`, Buffer.from(dec.decode(jpeg).pixels), 'PX', 60_000);
          sent.push(f.frameId);
        }
      } finally {
        dec.close();
      }
      expect(thumbnailOf(Buffer.alloc(320 * 180), 640, 360)).toMatchObject({ width: 320, height: 180 });
      expect(thumbnailOf(Buffer.alloc(160 * 90), 1280, 720)).toMatchObject({ width: 160, height: 90 });
      expect(thumbnailOf(Buffer.alloc(1000), 640, 360)).toBeUndefined();
      h.runtime(createMotionProcessor(), { id: 'motion-1' });
      h.buffer();
      await waitFor('6 results', async () => (await h.t.redis.xlen(h.t.keys.results)) === 6, 15_000);
      const results = (await h.t.redis.xrange(h.t.keys.results, '-', '+')).map(
        ([, f]) => JSON.parse(toFieldMap(f).get('result')!) as MotionResult,
      );
      expect(results.filter((r) => r.baseline)).toHaveLength(1);
      expect(
        results.filter((r) => !r.baseline).every((r) => r.motion && r.regions.every((g) => g.x + g.width <= 640 && g.y + g.height <= 360)),
      ).toBe(true);
    });
  });
});
