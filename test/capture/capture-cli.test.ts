import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBusEvent, isCameraEvent } from '../../src/bus/event-codec.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { listeningPort, runDetektr, spawnDetektr, type Spawned } from '../helpers/cli.js';
import { startOtlpReceiver } from '../helpers/otlp-receiver.js';
import { REDIS_URL, testRedis, waitFor, type TestRedis } from '../helpers/redis.js';
import { startRtspServer, type RtspServer } from '../helpers/rtsp-server.js';

/**
 * `detektr capture` as a user runs it (bin/detektr runs dist/: `npm run build` first),
 * against a real RTSP server that asks for a password.
 */

const PASSWORD = 's3cr3t-Pa55';
const WRONG = 'WR0NG-guess';

describe('detektr capture (CLI)', () => {
  let cam: RtspServer;
  let t: TestRedis;
  let dir: string;
  const procs: Spawned[] = [];
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    [cam, t] = await Promise.all([startRtspServer({ user: 'admin', password: PASSWORD, speed: 2 }), testRedis('capture-cli')]);
    dir = mkdtempSync(join(tmpdir(), 'detektr-capture-cli-'));
    env = { REDIS_URL, DETEKTR_PREFIX: t.prefix, DETEKTR_METRICS_PORT: '0' };
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop(5000)));
    await cam?.close();
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never shows a camera password: not in stdout/stderr, metrics, /readyz, /cameras, spans or events; stops cleanly on SIGTERM', async () => {
    const otlp = await startOtlpReceiver();
    try {
      const good = `rtsp://admin:${PASSWORD}@127.0.0.1:${cam.port}/cam`;
      const bad = `rtsp://admin:${WRONG}@127.0.0.1:${cam.port}/cam`;
      const p = spawnDetektr(['capture', '--camera', `front=${good}`, '--camera', `yard=${bad}`, '--fps', '5', '--log-level', 'debug'], {
        ...env,
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_BSP_SCHEDULE_DELAY: '200',
      });
      procs.push(p);
      const frames = async () => (await t.redis.xrange(t.keys.captured, '-', '+')).length;
      await waitFor('frames from front', async () => (await frames()) >= 5, 20_000);
      const base = `http://127.0.0.1:${await listeningPort(p, 'capture')}`;
      await waitFor(
        'yard reported offline',
        async () => /yard/.test(await (await fetch(`${base}/readyz`)).text()) && /401/.test(await (await fetch(`${base}/cameras`)).text()),
        10_000,
      );
      const metrics = await (await fetch(`${base}/metrics`)).text();
      const readyz = await (await fetch(`${base}/readyz`)).text();
      const cameras = (await (await fetch(`${base}/cameras`)).json()) as {
        cameras: { id: string; state: string; lastError?: string; url: string }[];
      };
      expect(metrics).toMatch(/detektr_frames_published_total\{[^}]*camera="front"[^}]*\} [1-9]/);
      expect(metrics).toMatch(/detektr_capture_stream_up\{[^}]*camera="front"[^}]*\} 1/);
      expect(metrics).toMatch(/detektr_capture_stream_up\{[^}]*camera="yard"[^}]*\} 0/);
      expect(metrics).toMatch(/detektr_capture_last_frame_age_seconds\{[^}]*camera="front"/);
      const yard = cameras.cameras.find((c) => c.id === 'yard')!;
      expect(yard.url).toBe(`rtsp://admin:***@127.0.0.1:${cam.port}/cam`);
      expect(yard.lastError).toMatch(/401 Unauthorized/);

      expect(await p.stop(15_000)).toBe(0);
      const events = (await t.redis.xrange(t.keys.events, '-', '+')).map(([, f]) => decodeBusEvent(f));
      const frontEvents = events.filter((e) => e.cameraId === 'front' && isCameraEvent(e));
      expect(frontEvents.map((e) => [e.type, e.reason])).toEqual([
        ['camera.online', undefined],
        ['camera.offline', 'stopped'],
      ]);
      const captured = events.filter((e): e is LifecycleEvent => e.type === 'frame.captured');
      // Graceful: every frame read was published (its event and message both there).
      expect(captured.length).toBe(await frames());
      await waitFor('spans exported', () => otlp.spans.some((s) => s.name === 'capture_frame'), 5000);

      const everything = [
        p.stdout(),
        p.stderr(),
        metrics,
        readyz,
        JSON.stringify(cameras),
        JSON.stringify(otlp.spans),
        JSON.stringify(events),
        JSON.stringify(await t.redis.xrange(t.keys.captured, '-', '+')),
      ].join('\n');
      expect(everything).toContain('admin:***@');
      expect(everything).not.toContain(PASSWORD);
      expect(everything).not.toContain(WRONG);
      // base64 of user:password (an Authorization header in a debug line) would leak it too.
      expect(everything).not.toContain(Buffer.from(`admin:${PASSWORD}`).toString('base64'));
    } finally {
      await otlp.close();
    }
  }, 60_000);

  it('exits 1 with a clear, redacted message when the only camera cannot be opened', async () => {
    const r = await runDetektr(['capture', '--camera', `front=rtsp://admin:${WRONG}@127.0.0.1:${cam.port}/cam`], env, 30_000);
    expect(r.code).toBe(1);
    const last = r.stderr.trim().split('\n').pop();
    expect(last).toBe(
      `detektr: camera "front": Cannot open video source "rtsp://admin:***@127.0.0.1:${cam.port}/cam": Server returned 401 Unauthorized (authorization failed)`,
    );
    expect(r.stderr + r.stdout).not.toContain(WRONG);
  });

  it.each([
    [['--camera', 'a=testsrc', '--invalid-frames', 'maybe'], /--invalid-frames "maybe"/],
    [['--camera', 'a=testsrc', '--transport', 'sctp'], /--rtsp-transport: "sctp" must be one of tcp, udp/],
    [['--camera', 'a=testsrc', '--timeout', 'soon'], /--camera-timeout: "soon" is not a duration/],
    [['--camera', 'a=testsrc', '--thumbnail-width', '4'], /--thumbnail-width "4" must be 0/],
    [['--camera', 'a=testsrc', '--ffmpeg-option', 'nope'], /--ffmpeg-option: "nope" must be key=value/],
    [['--camera', `a=http://admin:${WRONG}@host/x`], /unsupported scheme "http" in "http:\/\/admin:\*\*\*@host\/x"/],
    [['--camera', 'a=testsrc', '--camera', 'a=testsrc'], /camera id "a" is given twice/],
  ])('exits 2 naming the bad flag: %j', async (args, message) => {
    const r = await runDetektr(['capture', ...args], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain(WRONG);
  });

  it('reads cameras and their own settings from the config file', async () => {
    const file = join(dir, 'detektr.yml');
    writeFileSync(
      file,
      [
        'fps: 5',
        'cameras:',
        '  - id: slow',
        '    url: lavfi:testsrc2=size=160x120:rate=25',
        '    fps: 2',
        '    thumbnail-width: 40',
        '  - fast=lavfi:testsrc2=size=160x120:rate=25',
        '',
      ].join('\n'),
    );
    const r = await runDetektr(['capture', '--config', file, '--max-frames', '3'], env, 30_000);
    expect(r.code, r.stderr).toBe(0);
    const events = (await t.redis.xrange(t.keys.events, '-', '+'))
      .map(([, f]) => decodeBusEvent(f))
      .filter((e): e is LifecycleEvent => e.type === 'frame.captured' && (e.cameraId === 'slow' || e.cameraId === 'fast'));
    const pts = (id: string) => events.filter((e) => e.cameraId === id).map((e) => e.data?.ptsMs);
    expect(pts('slow')).toEqual([0, 520, 1000]);
    expect(pts('fast')).toEqual([0, 200, 400]);
    expect(events.filter((e) => e.cameraId === 'slow').every((e) => (e.data?.thumbnail as { width?: number })?.width === 40)).toBe(true);
    expect(events.filter((e) => e.cameraId === 'fast').every((e) => e.data?.thumbnail === undefined)).toBe(true);
  });
});
