import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCameraSpec } from '../../src/capture/camera-spec.js';
import { frameIdTime } from '../../src/domain/frame-id.js';
import { startCapture, type CaptureHarness } from '../helpers/capture.js';
import { waitFor } from '../helpers/redis.js';
import { startRtspServer, type RtspServer } from '../helpers/rtsp-server.js';

/**
 * CaptureService against real RTSP servers (GStreamer, started here) and the real Redis:
 * frames and metadata, a camera that dies and comes back, a camera that hangs.
 */

const jpegOk = (b: Buffer) => b[0] === 0xff && b[1] === 0xd8 && b[b.length - 2] === 0xff && b[b.length - 1] === 0xd9;
const servers: RtspServer[] = [];
const harnesses: CaptureHarness[] = [];

async function server(o: Parameters<typeof startRtspServer>[0]): Promise<RtspServer> {
  const s = await startRtspServer(o);
  servers.push(s);
  return s;
}

async function capture(o: Parameters<typeof startCapture>[0]): Promise<CaptureHarness> {
  const h = await startCapture(o);
  harnesses.push(h);
  return h;
}

afterAll(async () => {
  await Promise.all(harnesses.map((h) => h.close()));
  await Promise.all(servers.map((s) => s.close()));
});

describe('capture from RTSP cameras', () => {
  let h264: RtspServer;
  let h265: RtspServer;
  beforeAll(async () => {
    [h264, h265] = await Promise.all([server({ speed: 2 }), server({ codec: 'h265', speed: 2 })]);
  });

  it('publishes H.264 and H.265 frames, over TCP and UDP, at the requested fps, with correct metadata, payload and events', async () => {
    const h = await capture({
      cameras: [
        parseCameraSpec(`avc=${h264.url}`),
        parseCameraSpec(`hevc=${h265.url}`),
        { ...parseCameraSpec(`udp=${h264.url}`), settings: { transport: 'udp' } },
      ],
      fps: 5,
      maxFrames: 10,
      payloadTtlMs: 30_000,
    });
    await h.running;
    for (const cam of ['avc', 'hevc', 'udp']) {
      const frames = await h.frames(cam);
      expect(frames).toHaveLength(10);
      for (const f of frames) {
        expect(f).toMatchObject({ cameraId: cam, width: 320, height: 240, format: 'jpeg', priority: 5, capabilities: [] });
        expect(f.capturedAt).toBe(frameIdTime(f.frameId));
        expect(f.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
        const payload = await h.t.redis.getBuffer(f.payloadKey);
        expect(payload && jpegOk(payload)).toBe(true);
        expect(payload!.length).toBe(f.sizeBytes);
        const ttl = await h.t.redis.pttl(f.payloadKey);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(30_000);
      }
      const events = await h.frameEvents(cam);
      // 5 fps from a 25 fps camera: every 5th frame, 200 ms apart in stream time, and about
      // that in wall time (loosely: a busy machine delivers in bursts).
      const pts = events.map((e) => e.data?.ptsMs as number);
      expect(pts.slice(1).map((p, i) => p - pts[i])).toEqual(Array(9).fill(200));
      const span = frames[9].capturedAt - frames[0].capturedAt;
      expect(span).toBeGreaterThan(1000);
      expect(span).toBeLessThan(15_000);

      expect(events.map((e) => e.type)).toEqual(Array(10).fill('frame.captured'));
      expect(events.map((e) => e.frameId)).toEqual(frames.map((f) => f.frameId));
      expect(events[0].data).toMatchObject({ width: 320, height: 240, format: 'jpeg', sizeBytes: frames[0].sizeBytes });
      const camEvents = await h.cameraEvents(cam);
      expect(camEvents.map((e) => [e.type, e.reason])).toEqual([
        ['camera.online', undefined],
        ['camera.offline', 'stopped'],
      ]);
      expect(camEvents[0].data).toMatchObject({ codec: cam === 'hevc' ? 'hevc' : 'h264', width: 320, height: 240 });
      // camera.online comes before the camera's first frame in the stream.
      const all = await h.events();
      const online = all.findIndex((e) => e.type === 'camera.online' && e.cameraId === cam);
      const first = all.findIndex((e) => e.type === 'frame.captured' && e.cameraId === cam);
      expect(online).toBeLessThan(first);
      expect(await h.metric('detektr_frames_published_total', { camera: cam })).toBe(10);
      // Every decoded frame (~45 at 25 fps), not just the 10 sampled ones, the last second's included.
      await waitFor('decode times', async () => (await h.metric('detektr_capture_decode_seconds_count', { camera: cam })) >= 40, 5000);
      expect(await h.metric('detektr_capture_cpu_seconds_total', { camera: cam })).toBeGreaterThan(0);
      expect(h.spans.getFinishedSpans().filter((s) => s.name === 'capture_frame' && s.attributes['camera.id'] === cam)).toHaveLength(10);
    }
    expect(h.service.status.get('avc')!.stream).toMatchObject({ codec: 'h264', width: 320, height: 240 });
    expect(h.service.status.get('avc')!.lagMs).toBeGreaterThanOrEqual(0);
  });
});

describe('a camera that dies and comes back', () => {
  it('goes offline, reconnects with growing delays, resumes after the restart, once each way', async () => {
    const cam = await server({ speed: 2 });
    const h = await capture({
      cameras: [parseCameraSpec(`door=${cam.url}`)],
      fps: 5,
      settings: { timeoutMs: 2000 },
      reconnect: { baseMs: 150, maxMs: 2400, healthyAfterMs: 500 },
      offlineGraceMs: 700,
    });
    const st = h.service.status.get('door')!;
    await waitFor('frames from door', () => st.published >= 3, 15_000);
    expect(h.service.readiness().ready).toBe(true);

    await cam.kill();
    await waitFor('camera.offline', async () => (await h.cameraEvents('door')).some((e) => e.type === 'camera.offline'), 10_000);
    // Keep it down long enough for a few refused reconnects.
    await waitFor('4 reconnect attempts', () => st.failures >= 4, 15_000, 20);
    expect(st.online).toBe(false);
    expect(st.lastErrorReason).toBe('refused');
    await waitFor('not ready after the grace period', () => !h.service.readiness().ready, 5000);
    expect(h.service.readiness().checks['camera:door']).toMatch(/^offline for \d+s: Cannot open video source .*Connection refused/);

    await cam.restart();
    const before = st.published;
    await waitFor('frames again after the restart', () => st.published >= before + 3, 15_000);
    expect(h.service.readiness().ready).toBe(true);

    // Backoff ceilings grew 150, 300, 600, ... up to the cap, and the jittered delays stayed under them.
    const retries = h.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'camera offline; reconnecting');
    const ceilings = retries.map((l) => l.max_delay_ms as number);
    expect(ceilings.slice(0, 4)).toEqual([150, 300, 600, 1200]);
    for (let i = 1; i < ceilings.length; i++) expect(ceilings[i]).toBeGreaterThanOrEqual(ceilings[i - 1]);
    expect(ceilings.every((c) => c <= 2400)).toBe(true);
    expect(retries.every((l) => l.delay_ms >= 0 && l.delay_ms < l.max_delay_ms)).toBe(true);

    // One event per change of state, not one per retry.
    const types = (await h.cameraEvents('door')).map((e) => e.type);
    expect(types).toEqual(['camera.online', 'camera.offline', 'camera.online']);
    const offline = (await h.cameraEvents('door'))[1];
    expect(offline.reason).toMatch(/^(ended|timeout|error)$/);
    expect(String(offline.data?.error)).toContain(`rtsp://127.0.0.1:${cam.port}/cam`);
    expect(st.reconnects).toBeGreaterThanOrEqual(4);
    expect(await h.metric('detektr_capture_reconnects_total', { camera: 'door' })).toBe(st.reconnects);
    expect(await h.metric('detektr_capture_stream_up', { camera: 'door' })).toBe(1);
    // Healthy again for longer than healthyAfterMs: the backoff starts over.
    await waitFor('backoff reset', () => st.failures === 0, 5000);
  });
});

describe('a camera that hangs (SIGSTOP)', () => {
  it('is detected within 2x the timeout while the other camera keeps going, and reconnects after SIGCONT', async () => {
    const cam = await server({ speed: 2 });
    const TIMEOUT = 1500;
    const h = await capture({
      cameras: [parseCameraSpec(`gate=${cam.url}`), parseCameraSpec('synthetic=lavfi:testsrc2=size=160x120:rate=25')],
      fps: 5,
      settings: { timeoutMs: TIMEOUT },
      reconnect: { baseMs: 200, maxMs: 1000 },
    });
    const gate = h.service.status.get('gate')!;
    const synthetic = h.service.status.get('synthetic')!;
    await waitFor('frames from both', () => gate.published >= 3 && synthetic.published >= 3, 15_000);

    cam.pause();
    await waitFor('camera.offline', async () => (await h.cameraEvents('gate')).some((e) => e.type === 'camera.offline'), 4 * TIMEOUT);
    const offline = (await h.cameraEvents('gate')).find((e) => e.type === 'camera.offline')!;
    expect(offline.reason).toBe('timeout');
    // Detected within 2x the timeout of the last frame the camera sent.
    expect(offline.at - gate.lastFrameAt!).toBeLessThan(2 * TIMEOUT);
    // The hung camera never stalled the other one.
    const during = synthetic.published;
    await waitFor('synthetic frames while gate hangs', () => synthetic.published >= during + 5, 5000);
    expect(gate.online).toBe(false);

    cam.resume();
    const before = gate.published;
    await waitFor('gate frames after SIGCONT', () => gate.published >= before + 3, 20_000);
    expect((await h.cameraEvents('gate')).map((e) => e.type)).toEqual(['camera.online', 'camera.offline', 'camera.online']);
  });
});
