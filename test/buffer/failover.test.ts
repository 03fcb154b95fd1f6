import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toFieldMap } from '../../src/bus/fields.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { spawnDetektr, type Spawned } from '../helpers/cli.js';
import { REDIS_URL, testRedis, waitFor } from '../helpers/redis.js';
import { byType, harness, type Harness } from './harness.js';

const SLOW = fileURLToPath(new URL('./fixtures/slow-processor.mjs', import.meta.url));

/**
 * Real processes (`detektr buffer`, `detektr process`, built with `npm run build`) against
 * real Redis: kill -9, SIGSTOP, poison frames, several buffers side by side. Short idle
 * times and heartbeats through the environment, as an operator would set them.
 */
describe('failover with real processes (real Redis)', () => {
  let h: Harness;
  let env: NodeJS.ProcessEnv;
  const procs: Spawned[] = [];
  const spawn = (args: string[], extra: NodeJS.ProcessEnv = {}) => {
    const p = spawnDetektr(args, { ...env, ...extra });
    procs.push(p);
    return p;
  };
  const worker = (id: string, extra: string[] = [], slowMs = 1000) =>
    spawn(['process', '--module', SLOW, '--id', id, ...extra], { SLOW_MS: String(slowMs) });
  const live = async (n: number) => {
    await waitFor(`${n} processors registered`, async () => (await h.t.redis.zcard(h.t.keys.processors)) >= n, 20_000);
    await new Promise((r) => setTimeout(r, 600)); // the buffers refresh their view of the registry every 250 ms
  };
  const journey = (events: LifecycleEvent[], frameId: string) =>
    events
      .filter((e) => e.frameId === frameId)
      .map((e) => `${e.type}${e.processorId ? `@${e.processorId}` : ''}${e.attempt ? `#${e.attempt}` : ''}`);

  beforeEach(async () => {
    h = harness(await testRedis('failover'));
    env = {
      REDIS_URL,
      DETEKTR_PREFIX: h.t.prefix,
      DETEKTR_METRICS_PORT: '0',
      DETEKTR_LOG_LEVEL: 'warn',
      DETEKTR_CLAIM_IDLE: '1s',
      DETEKTR_HEARTBEAT_INTERVAL: '200ms',
      DETEKTR_PROCESSOR_TTL: '1500ms',
      DETEKTR_BLOCK_TIME: '100ms',
      DETEKTR_MAX_DELIVERIES: '2',
      DETEKTR_BREAKER_COOLDOWN: '1s',
    };
  });
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.stop(5000)));
    await h.close();
    await h.t.cleanup();
  });

  it('kill -9 of a processor holding frames: another instance of its id completes every one after the idle time; the journey shows both attempts', async () => {
    spawn(['buffer']);
    const a = worker('worker', ['--concurrency', '2', '--capacity', '4'], 1500);
    const b = worker('worker', ['--concurrency', '2', '--capacity', '4'], 1500);
    await live(1);
    await waitFor(
      'both instances registered',
      async () => Object.keys(await h.t.redis.hgetall(h.t.keys.processor('worker'))).filter((k) => k.startsWith('inst:')).length === 2,
      20_000,
    );
    const sent = await Promise.all(Array.from({ length: 6 }, () => h.publish({ capabilities: ['work'] })));
    const stream = h.t.keys.ready('worker');
    // Wait until instance a holds frames (its consumer name carries its pid).
    const heldFrames = await waitFor(
      'a started frames',
      async () => {
        const pending = (await h.t.redis.xpending(stream, 'processor', '-', '+', 100)) as [string, string, number, number][];
        const mine = pending.filter(([, consumer]) => consumer.includes(`-${a.proc.pid}-`)).map(([id]) => id);
        if (!mine.length) return false;
        const frames = await Promise.all(
          mine.map(async (id) => toFieldMap((await h.t.redis.xrange(stream, id, id))[0][1]).get('frame_id')!),
        );
        const started = new Set(byType(await h.events(), 'processing.started').map((e) => e.frameId));
        return frames.every((f) => started.has(f)) && frames;
      },
      15_000,
      20,
    );
    const killedAt = Date.now();
    a.proc.kill('SIGKILL');
    await waitFor('all 6 completed', async () => byType(await h.events(), 'processing.completed').length === 6, 30_000);
    const events = await h.events();
    for (const frameId of heldFrames) {
      expect(journey(events, frameId), frameId).toEqual([
        'frame.captured',
        'frame.queued@worker#1',
        'processing.started@worker#1',
        'processing.started@worker#2',
        'processing.completed@worker#2',
      ]);
      const done = events.find((e) => e.frameId === frameId && e.type === 'processing.completed')!;
      expect(done.at - killedAt, 'completed after the claim idle time').toBeGreaterThanOrEqual(900);
      const result = (await h.t.redis.xrange(h.t.keys.results, '-', '+'))
        .map(([, f]) => toFieldMap(f))
        .find((r) => r.get('frame_id') === frameId)!;
      expect(JSON.parse(result.get('result')!)).toEqual({ pid: b.proc.pid, attempt: 2 });
    }
    for (const f of sent) expect(byType(events, 'processing.completed').filter((e) => e.frameId === f.frameId)).toHaveLength(1);
    expect(await h.t.redis.xlen(h.t.keys.results)).toBe(6);
    expect(((await h.t.redis.xpending(stream, 'processor')) as [number])[0]).toBe(0);
    expect(await a.exited).toBe(-1);
  }, 60_000);

  it('kill -9 of the only instance of an id: the buffer re-routes its frames (queued and started) to another processor of the capability', async () => {
    spawn(['buffer']);
    const solo = worker('solo', ['--capacity', '4'], 20_000); // it never finishes a frame
    await live(1);
    const sent = await Promise.all(Array.from({ length: 4 }, () => h.publish({ capabilities: ['work'] })));
    await waitFor(
      'solo holds 4, one started',
      async () => (await h.t.redis.xlen(h.t.keys.ready('solo'))) === 4 && byType(await h.events(), 'processing.started').length === 1,
      15_000,
    );
    const started = byType(await h.events(), 'processing.started')[0].frameId;
    worker('backup', [], 20);
    await live(2);
    solo.proc.kill('SIGKILL');
    await waitFor('all 4 completed by backup', async () => byType(await h.events(), 'processing.completed').length === 4, 30_000);
    const events = await h.events();
    for (const f of sent) {
      const j = journey(events, f.frameId);
      const dropped = events.find((e) => e.frameId === f.frameId && e.type === 'frame.dropped')!;
      if (f.frameId === started) {
        // Started there: it can only move once solo is gone (its registry entry expired) and the frame idle.
        expect(dropped.reason).toBe('rerouted to backup: processor solo is gone (no heartbeat for 1500 ms)');
        expect(j).toEqual([
          'frame.captured',
          'frame.queued@solo#1',
          'processing.started@solo#1',
          'frame.queued@backup#1',
          'frame.dropped@solo',
          'processing.started@backup#1',
          'processing.completed@backup#1',
        ]);
      } else {
        // Never started: it moves as soon as solo's breaker opens on missed heartbeats (or it is gone).
        expect(dropped.reason).toMatch(/^rerouted to backup: processor solo (is gone|circuit breaker open \(no heartbeat for \d+ ms)/);
        expect(j).toEqual([
          'frame.captured',
          'frame.queued@solo#1',
          'frame.queued@backup#1',
          'frame.dropped@solo',
          'processing.started@backup#1',
          'processing.completed@backup#1',
        ]);
      }
    }
    expect(await h.t.redis.xlen(h.t.keys.ready('solo'))).toBe(0);
  }, 60_000);

  it('a processor that stops heart-beating (SIGSTOP) has its breaker opened: new and queued frames go to the other; it comes back after SIGCONT', async () => {
    env.DETEKTR_PROCESSOR_TTL = '10s'; // the breaker, not the registry expiry, must act
    const buffer = spawn(['buffer', '--strategy', 'round-robin'], { DETEKTR_LOG_LEVEL: 'info' });
    const frozen = worker('frozen', [], 20);
    worker('healthy', [], 20);
    await live(2);
    const port = await waitFor('buffer API port', () => {
      const line = buffer
        .stderr()
        .split('\n')
        .find((l) => l.includes('"msg":"listening"'));
      return line ? (JSON.parse(line) as { port: number; metrics: string }) : undefined;
    });
    expect(port.metrics).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/); // 127.0.0.1 by default
    const api = `http://127.0.0.1:${port.port}`;
    const breakerOf = async (id: string) =>
      ((await (await fetch(`${api}/processors/${id}`)).json()) as { breaker: { state: string; reason?: string } }).breaker;
    frozen.proc.kill('SIGSTOP');
    const sent: string[] = [];
    const states = new Set<string>();
    const t0 = Date.now();
    let openAt: number | undefined;
    // Frames all along, until the breaker has been open for a second (however long a loaded
    // machine takes to open it).
    while (openAt === undefined ? Date.now() - t0 < 20_000 : Date.now() - openAt < 1000) {
      sent.push((await h.publish({ capabilities: ['work'] })).frameId);
      const b = await breakerOf('frozen');
      states.add(b.state);
      if (b.state === 'open') {
        expect(b.reason).toMatch(/^no heartbeat for \d+ ms \(every 200 ms expected\)$/);
        openAt ??= Date.now();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(states.has('open')).toBe(true);
    frozen.proc.kill('SIGCONT');
    await waitFor(
      'breaker closed again',
      async () => {
        sent.push((await h.publish({ capabilities: ['work'] })).frameId);
        return (await breakerOf('frozen')).state === 'closed';
      },
      15_000,
      100,
    );
    await waitFor('every frame completed', async () => byType(await h.events(), 'processing.completed').length === sent.length, 20_000);
    const events = await h.events();
    const rerouted = byType(events, 'frame.dropped');
    expect(rerouted.length).toBeGreaterThan(0);
    for (const d of rerouted) expect(d.reason).toMatch(/^rerouted to healthy: processor frozen circuit breaker open \(no heartbeat/);
    const doneBy = (id: string) => byType(events, 'processing.completed').filter((e) => e.processorId === id).length;
    expect(doneBy('healthy')).toBeGreaterThan(doneBy('frozen'));
    expect(doneBy('frozen')).toBeGreaterThan(0); // it works again after SIGCONT
  }, 60_000);

  it('a poison frame that kills every processor it reaches is dead-lettered after maxDeliveries, counted, and the pipeline goes on', async () => {
    spawn(['buffer']);
    const v1 = worker('victim', ['--capacity', '4'], 100);
    const v2 = worker('victim', ['--capacity', '4'], 100);
    await live(1);
    await waitFor(
      'both victims registered',
      async () => Object.keys(await h.t.redis.hgetall(h.t.keys.processor('victim'))).filter((k) => k.startsWith('inst:')).length === 2,
      20_000,
    );
    const poison = await h.publish({ cameraId: 'poison', capabilities: ['work'] });
    const normal = await Promise.all(Array.from({ length: 3 }, () => h.publish({ cameraId: 'ok', capabilities: ['work'] })));
    await Promise.race([v1.exited, v2.exited]);
    worker('other', [], 20);
    await waitFor('poison dead-lettered', async () => (await h.t.redis.xlen(h.t.keys.deadLetter)) === 1, 30_000);
    await waitFor('normal frames completed', async () => byType(await h.events(), 'processing.completed').length === 3, 30_000);
    expect(await v1.exited).toBe(-1);
    expect(await v2.exited).toBe(-1);
    const [[, fields]] = await h.t.redis.xrange(h.t.keys.deadLetter, '-', '+');
    const dl = toFieldMap(fields);
    expect(dl.get('stream')).toBe(h.t.keys.ready('victim'));
    expect(dl.get('reason')).toBe('delivered 3 times (max 2)');
    expect(await h.t.redis.hget(h.t.keys.counters, `dead_letter:${h.t.keys.ready('victim')}`)).toBe('1');
    const events = await h.events();
    expect(journey(events, poison.frameId)).toEqual([
      'frame.captured',
      'frame.queued@victim#1',
      'processing.started@victim#1',
      'processing.started@victim#2',
      'processing.failed@victim#3',
    ]);
    expect(events.find((e) => e.frameId === poison.frameId && e.type === 'processing.failed')?.error).toBe(
      'dead-lettered after 3 deliveries (max 2): the frame keeps killing its processor',
    );
    for (const f of normal) expect(byType(events, 'processing.completed').filter((e) => e.frameId === f.frameId)).toHaveLength(1);
  }, 60_000);

  it('several buffers and several processors of one capability side by side: every frame handed off once per capability, no duplicate in any journey', async () => {
    spawn(['buffer']);
    spawn(['buffer', '--strategy', 'round-robin']);
    worker('p1', ['--concurrency', '2'], 10);
    worker('p1', ['--concurrency', '2'], 10);
    worker('p2', [], 10);
    spawn(['process', '--processor', 'sample']);
    await live(3);
    const sent = [];
    for (let i = 0; i < 80; i++)
      sent.push(await h.publish({ cameraId: `cam${i % 4}`, capabilities: i % 2 ? ['work', 'sample'] : ['work'] }));
    await waitFor('120 stages completed', async () => byType(await h.events(), 'processing.completed').length >= 120, 30_000);
    await new Promise((r) => setTimeout(r, 500)); // a duplicate would show up by now
    const events = await h.events();
    sent.forEach((f, i) => {
      const caps = i % 2 ? ['sample', 'work'] : ['work'];
      const queued = events.filter((e) => e.frameId === f.frameId && e.type === 'frame.queued');
      expect(queued.map((e) => e.capability).sort(), f.frameId).toEqual(caps);
      const done = events.filter((e) => e.frameId === f.frameId && e.type === 'processing.completed');
      expect(done.map((e) => e.capability).sort()).toEqual(caps);
      expect(events.filter((e) => e.frameId === f.frameId && e.type === 'processing.started')).toHaveLength(caps.length);
    });
    const workDone = byType(events, 'processing.completed').filter((e) => e.capability === 'work');
    expect(new Set(workDone.map((e) => e.processorId))).toEqual(new Set(['p1', 'p2']));
    expect(await h.t.redis.xlen(h.t.keys.results)).toBe(120);
    expect(byType(events, 'frame.dropped')).toEqual([]);
    // Both buffers took part.
    const [groups] = [(await h.t.redis.xinfo('CONSUMERS', h.t.keys.captured, 'buffer')) as unknown[][]];
    expect(groups.length).toBe(2);
  }, 60_000);
});
