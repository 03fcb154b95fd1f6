import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toFieldMap } from '../../src/bus/fields.js';
import { encodeFrame } from '../../src/bus/frame-codec.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import { frameIdTime, newFrameId } from '../../src/domain/frame-id.js';
import type { FrameMessage } from '../../src/domain/frame.js';
import { loadProcessorModule } from '../../src/process/load-module.js';
import type { Processor } from '../../src/process/processor.js';
import { testRedis, waitFor } from '../helpers/redis.js';
import { byType, harness, slowProcessor, type Harness } from '../buffer/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'detektr-modules-'));
const moduleFile = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return pathToFileURL(path).href;
};

function readyFrame(processorId: string, over: Partial<FrameMessage> = {}): FrameMessage {
  const frameId = newFrameId();
  return {
    frameId,
    cameraId: 'cam',
    capturedAt: frameIdTime(frameId),
    width: 32,
    height: 32,
    format: 'jpeg',
    sizeBytes: 10,
    priority: 5,
    payloadKey: 'nope',
    capabilities: ['x'],
    processorId,
    capability: 'x',
    ...over,
  };
}

describe('processor plugin modules', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads a default-exported processor object, or a module exporting process() and capabilities at its top level', async () => {
    const obj = await loadProcessorModule(
      moduleFile(
        'obj.mjs',
        `
      export default { name: 'person', capabilities: ['person_detection'], needsImage: true,
        setup(ctx) { this.threshold = Number(ctx.options.threshold ?? 0.5); },
        process(frame) { return { threshold: this.threshold, camera: frame.cameraId }; } };`,
      ),
      'obj.mjs',
    );
    expect(obj).toMatchObject({ name: 'person', capabilities: ['person_detection'], needsImage: true });
    await obj.setup!({ processorId: 'p', logger: console as never, options: { threshold: '0.8' } });
    expect(await obj.process({ cameraId: 'c' } as never, {} as never)).toEqual({ threshold: 0.8, camera: 'c' });

    const flat = await loadProcessorModule(
      moduleFile(
        'my-detector.mjs',
        `
      export const capabilities = ['lpr'];
      export async function process(frame) { return { plate: null, size: frame.sizeBytes }; }`,
      ),
      'my-detector.mjs',
    );
    expect(flat).toMatchObject({ name: 'my-detector', capabilities: ['lpr'], needsImage: false });
    expect(await flat.process({ sizeBytes: 3 } as never, {} as never)).toEqual({ plate: null, size: 3 });

    const declared = await loadProcessorModule(moduleFile('bare.mjs', 'export function process() { return {}; }'), 'bare.mjs', [
      'person_detection',
    ]);
    expect(declared.capabilities).toEqual(['person_detection']);
  });

  it('rejects a module that does not fit the interface, naming every problem', async () => {
    await expect(loadProcessorModule(moduleFile('bare2.mjs', 'export function process() { return {}; }'), 'bare2.mjs')).rejects.toThrow(
      /capabilities` must be a non-empty array of names \(or give --capability\)/,
    );
    const err = await loadProcessorModule(
      moduleFile('bad.mjs', "export default { name: 'a b', capabilities: 'x', process: 1, setup: 'no' };"),
      'bad.mjs',
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toMatch(
      /`name` must be .*; `capabilities` must be .*; `process\(frame, ctx\)` must be a function; `setup` must be a function/,
    );
    await expect(loadProcessorModule(moduleFile('broken.mjs', 'export default {'), 'broken.mjs')).rejects.toThrow(
      /--module broken.mjs: cannot be loaded/,
    );
  });
});

describe('processor runtime (real Redis)', () => {
  let h: Harness;
  beforeEach(async () => {
    h = harness(await testRedis('runtime'));
  });
  afterEach(async () => {
    await h.close();
    await h.t.cleanup();
  });

  it("processes up to --concurrency frames at once and publishes results and lifecycle events on the frame's trace", async () => {
    let now = 0;
    let peak = 0;
    const p: Processor = {
      name: 'conc',
      capabilities: ['x'],
      async process(frame, ctx) {
        peak = Math.max(peak, ++now);
        await new Promise((r) => setTimeout(r, 150));
        now--;
        return { camera: frame.cameraId, attempt: ctx.attempt };
      },
    };
    h.runtime(p, { concurrency: 3 });
    h.buffer();
    const sent = await Promise.all(Array.from({ length: 9 }, (_, i) => h.publish({ cameraId: `c${i}`, capabilities: ['x'] })));
    await waitFor('9 results', async () => (await h.t.redis.xlen(h.t.keys.results)) === 9);
    // Three at once, never more (no wall-clock gate: a loaded machine may take any time).
    expect(peak).toBe(3);
    const results = (await h.t.redis.xrange(h.t.keys.results, '-', '+')).map(([, f]) => Object.fromEntries(toFieldMap(f)));
    for (const f of sent) {
      const r = results.find((x) => x.frame_id === f.frameId)!;
      expect(r).toMatchObject({ processor_id: 'conc', capability: 'x', attempt: '1' });
      expect(JSON.parse(r.result)).toMatchObject({ attempt: 1 });
      expect(r.traceparent.slice(3, 35), "result on the frame's trace").toBe(f.traceId);
    }
    const events = await h.events();
    for (const f of sent) {
      const mine = events.filter((e) => e.frameId === f.frameId);
      expect(mine.map((e) => e.type)).toEqual(['frame.captured', 'frame.queued', 'processing.started', 'processing.completed']);
      expect(new Set(mine.map((e) => e.traceId))).toEqual(new Set([f.traceId]));
      expect(mine.find((e) => e.type === 'processing.completed')).toMatchObject({
        processorId: 'conc',
        capability: 'x',
        attempt: 1,
        data: { attempt: 1 },
      });
    }
    // Acked frames leave the ready stream: its length is the processor's queue depth.
    expect(await h.t.redis.xlen(h.t.keys.ready('conc'))).toBe(0);
  });

  it('fails a frame that runs past --frame-timeout (its signal aborts) and goes on with the next', async () => {
    let aborted = 0;
    const p: Processor = {
      name: 'hang',
      capabilities: ['x'],
      process(frame, ctx) {
        if (frame.cameraId === 'stuck') return new Promise(() => ctx.signal.addEventListener('abort', () => aborted++));
        return { ok: true };
      },
    };
    h.runtime(p, { frameTimeoutMs: 200 });
    h.buffer();
    const stuck = await h.publish({ cameraId: 'stuck', capabilities: ['x'] });
    const fine = await h.publish({ cameraId: 'fine', capabilities: ['x'] });
    await waitFor(
      'both done',
      async () =>
        byType(await h.events(), 'processing.started').length === 2 &&
        (await h.events()).filter((e) => e.type.startsWith('processing.') && e.type !== 'processing.started').length === 2,
    );
    const events = await h.events();
    expect(byType(events, 'processing.failed')).toEqual([
      expect.objectContaining({ frameId: stuck.frameId, error: 'timed out after 200 ms', attempt: 1 }),
    ]);
    expect(byType(events, 'processing.completed').map((e) => e.frameId)).toEqual([fine.frameId]);
    expect(aborted).toBe(1);
  });

  it('commits a frame once when two instances both processed it (the slow one was thought dead): exactly-once effect', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const stalled: Processor = {
      name: 'dup',
      capabilities: ['x'],
      async process() {
        await gate;
        return { by: 'stalled' };
      },
    };
    // No keep-alive (long heartbeat): its frame looks abandoned after the other's claimIdle.
    h.runtime(stalled, { heartbeatMs: 60_000, claimIdleMs: 60_000 });
    h.buffer();
    const f = await h.publish({ capabilities: ['x'] });
    await waitFor('started by the first instance', async () => byType(await h.events(), 'processing.started').length === 1);
    h.runtime({ name: 'dup', capabilities: ['x'], process: () => ({ by: 'rescuer' }) }, { claimIdleMs: 400 });
    await waitFor('completed by the second', async () => byType(await h.events(), 'processing.completed').length === 1, 10_000);
    release();
    await waitFor('duplicate suppressed', async () => (await h.metrics.duplicatesSuppressed.get()).values[0]?.value === 1);
    const events = (await h.events()).filter((e) => e.frameId === f.frameId);
    expect(events.map((e) => `${e.type}:${e.attempt ?? ''}`)).toEqual([
      'frame.captured:',
      'frame.queued:1',
      'processing.started:1',
      'processing.started:2',
      'processing.completed:2',
    ]);
    const results = await h.t.redis.xrange(h.t.keys.results, '-', '+');
    expect(results).toHaveLength(1);
    expect(JSON.parse(toFieldMap(results[0][1]).get('result')!)).toEqual({ by: 'rescuer' });
  });

  it('dead-letters a malformed entry and a poison frame (delivered more than maxDeliveries), counts them, ends the poison stage, and goes on', async () => {
    const { redis, keys } = h.t;
    const stream = keys.ready('worker');
    await redis.xgroup('CREATE', stream, 'processor', '0', 'MKSTREAM');
    await redis.xadd(stream, '*', 'v', '1', 'frame_id', 'garbage');
    const poison = readyFrame('worker');
    const poisonId = (await redis.xadd(stream, '*', ...encodeFrame(poison)))!;
    // Three consumers took the poison frame and died with it (maxDeliveries is 3).
    await redis.xreadgroup('GROUP', 'processor', 'dead1', 'COUNT', 10, 'STREAMS', stream, '>');
    await redis.xclaim(stream, 'processor', 'dead2', 0, poisonId);
    await redis.xclaim(stream, 'processor', 'dead3', 0, poisonId);
    const good = readyFrame('worker');
    await redis.xadd(stream, '*', ...encodeFrame(good));
    h.runtime(slowProcessor('worker', ['x'], 0), { claimIdleMs: 200 });
    await waitFor('the good frame', async () => byType(await h.events(), 'processing.completed').length === 1);
    await waitFor('both dead-lettered', async () => (await redis.xlen(keys.deadLetter)) === 2, 10_000);
    const dead = (await redis.xrange(keys.deadLetter, '-', '+')).map(([, f]) => Object.fromEntries(toFieldMap(f)));
    expect(dead.map((d) => d.reason).sort()).toEqual(['delivered 4 times (max 3)', 'malformed: field frame_id is malformed: "garbage"']);
    expect(await redis.hget(keys.counters, `dead_letter:${stream}`)).toBe('2');
    const failed = byType(await h.events(), 'processing.failed');
    expect(failed).toEqual([
      expect.objectContaining({
        frameId: poison.frameId,
        processorId: 'worker',
        attempt: 4,
        error: 'dead-lettered after 4 deliveries (max 3): the frame keeps killing its processor',
      }),
    ]);
    expect(await redis.xlen(stream)).toBe(0);
    expect(((await redis.xpending(stream, 'processor')) as [number])[0]).toBe(0);
  });

  it('on stop, hands back a frame it could not finish (no failure recorded); another instance completes it', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const r1 = h.runtime(
      {
        name: 'handover',
        capabilities: ['x'],
        async process() {
          await gate;
          return {};
        },
      },
      { drainMs: 200, claimIdleMs: 300 },
    );
    h.buffer();
    const f = await h.publish({ capabilities: ['x'] });
    await waitFor('started', async () => byType(await h.events(), 'processing.started').length === 1);
    await r1.close();
    release();
    expect(((await h.t.redis.xpending(h.t.keys.ready('handover'), 'processor')) as [number])[0]).toBe(1);
    h.runtime({ name: 'handover', capabilities: ['x'], process: () => ({ second: true }) }, { claimIdleMs: 300 });
    await waitFor('completed', async () => byType(await h.events(), 'processing.completed').length === 1, 10_000);
    const mine = (await h.events()).filter((e) => e.frameId === f.frameId).map((e) => `${e.type}:${e.attempt ?? ''}`);
    expect(mine).toEqual(['frame.captured:', 'frame.queued:1', 'processing.started:1', 'processing.started:2', 'processing.completed:2']);
  });
});

describe('buffer intake of bad entries (real Redis)', () => {
  let h: Harness;
  beforeEach(async () => {
    h = harness(await testRedis('badintake'));
  });
  afterEach(async () => {
    await h.close();
    await h.t.cleanup();
  });

  it('dead-letters malformed captured and lane entries, drops a readable one with a frame.dropped, and the pipeline continues', async () => {
    const { redis, keys } = h.t;
    h.runtime(slowProcessor('s', ['x'], 0));
    await redis.xadd(keys.captured, '*', 'v', '1', 'frame_id', 'not-a-ulid');
    const readable = readyFrame('s');
    await redis.xadd(keys.captured, '*', ...encodeFrame(readable).map((v, i, a) => (a[i - 1] === 'width' ? '-5' : v)));
    await redis.xadd(keys.lane('normal'), '*', 'v', '9', 'junk', '1');
    h.buffer();
    const good = await h.publish({ capabilities: ['x'] });
    await waitFor('good frame completed', async () =>
      byType(await h.events(), 'processing.completed').some((e) => e.frameId === good.frameId),
    );
    await waitFor('three dead-lettered', async () => (await redis.xlen(keys.deadLetter)) === 3);
    const counters = await redis.hgetall(keys.counters);
    expect(counters).toEqual({ [`dead_letter:${keys.captured}`]: '2', [`dead_letter:${keys.lane('normal')}`]: '1' });
    const dropped = byType(await h.events(), 'frame.dropped');
    expect(dropped).toEqual([
      expect.objectContaining({
        frameId: readable.frameId,
        reason: expect.stringMatching(/^dead-lettered: malformed: field width must be an integer/),
      }),
    ]);
    expect((await h.metrics.entriesMalformed.get()).values.reduce((s, v) => s + v.value, 0)).toBe(3);
  });
});
