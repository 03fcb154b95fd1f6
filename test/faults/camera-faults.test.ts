import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listeningPort } from '../helpers/cli.js';
import { startRtspServer, type RtspServer } from '../helpers/rtsp-server.js';
import { waitFor } from '../helpers/redis.js';
import { FaultPipeline, report, sleep } from './fault-pipeline.js';

const FPS = 10;

/**
 * One `detektr capture` with three cameras (two real RTSP servers, one synthetic) feeding
 * the whole pipeline. One RTSP camera is killed and restarted, then the other is stalled
 * (SIGSTOP) and resumed: each comes back by itself, the other cameras keep their rate
 * throughout, and every frame published ends with a final state in the store.
 */
describe('camera faults while the pipeline runs', () => {
  let door: RtspServer;
  let gate: RtspServer;
  let metricsPort: number;
  let p: FaultPipeline;
  beforeAll(async () => {
    [door, gate] = await Promise.all([
      startRtspServer({ size: '320x240', fps: 25, speed: 2 }),
      startRtspServer({ size: '320x240', fps: 25, speed: 2 }),
    ]);
    p = new FaultPipeline({
      label: 'camfault',
      captureArgs: [
        '--camera',
        `door=${door.url}`,
        '--camera',
        `gate=${gate.url}`,
        '--camera',
        'yard=lavfi:testsrc2=size=320x240:rate=25',
        '--fps',
        String(FPS),
        '--timeout',
        '1500ms',
        '--stall-timeout',
        '3s',
        '--reconnect-max',
        '1s',
        // Its metrics port (the kernel's pick) is in the `listening` line, logged at info.
        '--log-level',
        'info',
      ],
    });
  });
  afterAll(async () => {
    await p?.close();
    await Promise.all([door?.close(), gate?.close()]);
  });

  const published = async (): Promise<Record<string, number>> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^detektr_frames_published_total\{[^}]*camera="([^"]+)"[^}]*\} (\S+)$/gm))
      out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
    return out;
  };
  /** Frames per second each camera published over `ms`. */
  const rates = async (ms: number): Promise<Record<string, number>> => {
    const a = await published();
    await sleep(ms);
    const b = await published();
    return Object.fromEntries(Object.keys(b).map((k) => [k, Math.round(((b[k] - (a[k] ?? 0)) / (ms / 1000)) * 10) / 10]));
  };
  /** Seconds from now until the camera publishes again. */
  const backAfter = async (camera: string, since: number): Promise<number> => {
    const before = (await published())[camera] ?? 0;
    await waitFor(`${camera} publishing again`, async () => ((await published())[camera] ?? 0) > before, 30_000, 100);
    return (Date.now() - since) / 1000;
  };

  it('a killed and a stalled camera recover by themselves; the others keep their rate; every frame is accounted for', async () => {
    await p.migrate();
    await p.startAll();
    metricsPort = await listeningPort(p.start('capture'), 'capture');
    await waitFor(
      'all three cameras publishing',
      async () => {
        const n = await published().catch(() => ({}) as Record<string, number>);
        return ['door', 'gate', 'yard'].every((c) => (n[c] ?? 0) >= 5);
      },
      30_000,
      200,
    );

    await door.kill();
    const whileDoorDown = await rates(3000);
    await door.restart();
    const doorBack = await backAfter('door', Date.now());

    gate.pause();
    const whileGateStalled = await rates(5000);
    gate.resume();
    const gateBack = await backAfter('gate', Date.now());
    await sleep(2000);

    const finalCounts = await published();
    const stoppedAt = new Date();
    await p.workers.get('capture')!.stop(10_000);
    const total = Object.values(finalCounts).reduce((a, b) => a + b, 0);
    await waitFor(
      'every published frame finished',
      async () => {
        const a = await p.accounting();
        const stored = Object.values(a.byState).reduce((x, y) => x + y, 0);
        return stored >= total && a.unfinished === 0;
      },
      60_000,
      250,
    );
    const acc = await p.accounting();
    const { rows } = await p.pool.query<{ camera_id: string; types: string[] }>(
      'SELECT camera_id, array_agg(type ORDER BY at) AS types FROM camera_events WHERE at < $1 GROUP BY camera_id',
      [stoppedAt],
    ); // (capture's stop adds a camera.offline of every camera)
    const events = Object.fromEntries(rows.map((r) => [r.camera_id, r.types.join(' ')]));
    report('RTSP camera killed 3 s / stalled 5 s (3 cameras, 10 fps each)', {
      published: finalCounts,
      stored: acc.byState,
      doorBackAfterRestartS: doorBack,
      gateBackAfterSigcontS: gateBack,
      whileDoorDown,
      whileGateStalled,
      cameraEvents: events,
    });

    // The others kept their rate while one camera was down or hung.
    expect(whileDoorDown.gate).toBeGreaterThanOrEqual(FPS * 0.8);
    expect(whileDoorDown.yard).toBeGreaterThanOrEqual(FPS * 0.8);
    expect(whileDoorDown.door).toBeLessThan(1); // only frames already in flight at the kill
    expect(whileGateStalled.door).toBeGreaterThanOrEqual(FPS * 0.8);
    expect(whileGateStalled.yard).toBeGreaterThanOrEqual(FPS * 0.8);
    expect(doorBack).toBeLessThan(10);
    expect(gateBack).toBeLessThan(10);
    expect(events.door).toBe('camera.online camera.offline camera.online');
    expect(events.gate).toBe('camera.online camera.offline camera.online');
    expect(events.yard).toBe('camera.online');
    // Every frame published is stored with a final state (a few more were published between
    // the last scrape and the stop).
    expect(acc.unfinished).toBe(0);
    expect(acc.duplicates).toBe(0);
    expect(Object.values(acc.byState).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(total);
  }, 180_000);
});
