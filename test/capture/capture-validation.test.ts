import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCameraSpec } from '../../src/capture/camera-spec.js';
import { DEFAULT_VALIDATION } from '../../src/capture/frame-check.js';
import { openVideoSource } from '../../src/capture/video-source.js';
import { startCapture, type CaptureHarness } from '../helpers/capture.js';
import { waitFor } from '../helpers/redis.js';
import { startRtspServer, type RtspServer } from '../helpers/rtsp-server.js';

/**
 * CaptureService with cameras that cannot work (wrong host, path, credentials, not a video)
 * beside one that does, and with pictures that are frozen or black.
 */

const servers: RtspServer[] = [];
const harnesses: CaptureHarness[] = [];
let dir: string;
let http: Server;
let httpPort: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'detektr-capture-'));
  // Not a camera: a web server answering every request with a page.
  http = createServer((_req, res) => res.end('<html>not a camera</html>'));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  httpPort = (http.address() as AddressInfo).port;
});

afterAll(async () => {
  await Promise.all(harnesses.map((h) => h.close()));
  await Promise.all(servers.map((s) => s.close()));
  http.closeAllConnections();
  await new Promise<void>((r) => http.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

describe('cameras that cannot work', () => {
  it('reports each with a clear, redacted error and gives up on them, while the good camera keeps running', async () => {
    const cam = await startRtspServer({ user: 'admin', password: 's3cret', speed: 2 });
    servers.push(cam);
    const bad = {
      creds: `rtsp://admin:WRONGpw@127.0.0.1:${cam.port}/cam`,
      path: `rtsp://admin:s3cret@127.0.0.1:${cam.port}/no-such-stream`,
      host: 'rtsp://admin:s3cret@no-such-camera.invalid:554/cam',
      web: `rtsp://admin:s3cret@127.0.0.1:${httpPort}/cam`,
      file: `file://${join(dir, 'not-a-video.mp4')}`,
    };
    writeFileSync(join(dir, 'not-a-video.mp4'), 'hello, I am text\n'.repeat(100));
    const h = await startCapture({
      cameras: [parseCameraSpec(`good=${cam.authUrl}`), ...Object.entries(bad).map(([id, url]) => parseCameraSpec(`${id}=${url}`))],
      fps: 5,
      reconnect: { baseMs: 100, maxMs: 400 },
      settings: { timeoutMs: 2000 },
    });
    const status = h.service.status;
    await waitFor('every bad camera failed', () => Object.keys(bad).every((id) => status.get(id)!.state === 'failed'), 20_000);
    const good = status.get('good')!;
    const before = good.published;
    await waitFor('good camera still publishing', () => good.published >= before + 5, 10_000);
    expect(good.state).toBe('online');

    const expected: Record<string, [string, RegExp]> = {
      creds: ['unauthorized', /^Cannot open video source "rtsp:\/\/admin:\*\*\*@127\.0\.0\.1:\d+\/cam": Server returned 401 Unauthorized/],
      path: [
        'not_found',
        /^Cannot open video source "rtsp:\/\/admin:\*\*\*@127\.0\.0\.1:\d+\/no-such-stream": Server returned 404 Not Found$/,
      ],
      host: [
        'host_not_found',
        /^Cannot open video source "rtsp:\/\/admin:\*\*\*@no-such-camera\.invalid:554\/cam": host "no-such-camera\.invalid" not found$/,
      ],
      web: [
        'not_video',
        /^Cannot open video source "rtsp:\/\/admin:\*\*\*@127\.0\.0\.1:\d+\/cam": Invalid data found when processing input$/,
      ],
      file: ['not_video', /^Cannot open video source ".*not-a-video\.mp4": Invalid data found when processing input$/],
    };
    for (const [id, [reason, message]] of Object.entries(expected)) {
      const s = status.get(id)!;
      expect(s.lastErrorReason, id).toBe(reason);
      expect(s.lastError, id).toMatch(message);
      // Retried (each failure counted) but announced once.
      expect(s.failures, id).toBeGreaterThanOrEqual(3);
      const events = await h.cameraEvents(id);
      expect(
        events.map((e) => [e.type, e.reason]),
        id,
      ).toEqual([['camera.offline', reason]]);
      expect(String(events[0].data?.error)).toMatch(message);
    }
    expect(h.service.readiness().ready).toBe(false);
    expect(h.service.failure).toBeUndefined();

    // No password anywhere: logs, events, metrics, spans.
    const everything = [
      ...h.logs,
      JSON.stringify(await h.events()),
      await h.metrics.registry.metrics(),
      JSON.stringify(h.spans.getFinishedSpans().map((s) => ({ a: s.attributes, e: s.events, st: s.status }))),
      JSON.stringify([...status.values()]),
    ].join('\n');
    expect(everything).not.toContain('s3cret');
    expect(everything).not.toContain('WRONGpw');
  });

  it('gives up when the only camera cannot work, saying why', async () => {
    const h = await startCapture({
      cameras: [parseCameraSpec('only=rtsp://u:pw@no-such-camera.invalid/cam')],
      reconnect: { baseMs: 50, maxMs: 100 },
    });
    harnesses.push(h);
    await expect(h.running).rejects.toThrow(
      'camera "only": Cannot open video source "rtsp://u:***@no-such-camera.invalid/cam": host "no-such-camera.invalid" not found',
    );
    expect(h.service.failure).toBeDefined();
  });
});

describe('frozen and black pictures', () => {
  let still: RtspServer;
  let photo: string;
  beforeAll(async () => {
    // smpte100: color bars without smpte's patch of noise.
    still = await startRtspServer({ pattern: 'smpte100' });
    servers.push(still);
    // A still image, looped: a JPEG of the test pattern.
    photo = join(dir, 'still.jpg');
    for await (const img of openVideoSource({ url: 'testsrc2=size=320x240:rate=25', kind: 'lavfi', fps: 25 })) {
      writeFileSync(photo, img.jpeg);
      break;
    }
  });

  it('flags frozen cameras (a still RTSP stream, a looped still image), raises camera.frozen once, and drops black frames by policy', async () => {
    const frozenAfterMs = 1000;
    const h = await startCapture({
      cameras: [
        parseCameraSpec(`still=${still.url}`),
        parseCameraSpec(`photo=file://${photo}`),
        {
          ...parseCameraSpec('dark=lavfi:color=black:size=160x120:rate=25'),
          settings: { validation: { policy: { ...DEFAULT_VALIDATION.policy, black: 'drop' } } },
        },
        parseCameraSpec('moving=lavfi:testsrc2=size=160x120:rate=25'),
      ],
      fps: 5,
      settings: { validation: { ...DEFAULT_VALIDATION, frozenAfterMs }, thumbnailWidth: 32 },
    });
    harnesses.push(h);
    const status = h.service.status;
    await waitFor('still and photo frozen', () => status.get('still')!.frozen && status.get('photo')!.frozen, 15_000);
    expect(await h.metric('detektr_capture_frozen', { camera: 'still' })).toBe(1);
    expect(h.service.readiness().checks['camera:photo']).toBe('online (frozen)');
    await waitFor(
      'more frozen frames',
      async () => (await h.frameEvents('photo')).filter((e) => (e.data?.flags as string[] | undefined)?.includes('frozen')).length >= 3,
      10_000,
    );
    // Stop, so that events, frames and metrics below are read at rest.
    await h.service.close();

    for (const id of ['still', 'photo']) {
      const camEvents = await h.cameraEvents(id);
      expect(
        camEvents.map((e) => e.type),
        id,
      ).toEqual(['camera.online', 'camera.frozen', 'camera.offline']);
      expect(camEvents[2].reason).toBe('stopped');
      expect(camEvents[1].reason).toMatch(/^picture unchanged for \d+(\.\d)? s$/);
      expect(Number(camEvents[1].data?.frozenMs)).toBeGreaterThanOrEqual(frozenAfterMs);
      const events = await h.frameEvents(id);
      const flagged = events.filter((e) => (e.data?.flags as string[] | undefined)?.includes('frozen'));
      expect(flagged.length, id).toBeGreaterThan(0);
      // Frozen frames are kept (policy flag): published with their payload.
      expect((await h.frames(id)).length).toBe(events.length);
      // Not before the picture had been still for frozenAfterMs.
      expect(events[0].data?.flags).toBeUndefined();
      expect(await h.metric('detektr_capture_flagged_total', { camera: id, flag: 'frozen' })).toBe(flagged.length);
      expect(h.service.status.get(id)!.frozen).toBe(false); // stopped: offline, no longer frozen
    }

    // Black frames, policy drop: frame.captured + frame.dropped (reason black) back to back, no frame message, no payload.
    const all = await h.events();
    const dark = all.map((e, i) => ({ e, i })).filter(({ e }) => e.cameraId === 'dark' && e.type === 'frame.dropped');
    expect(dark.length).toBeGreaterThan(3);
    for (const { e, i } of dark) {
      const captured = all[i - 1];
      expect(captured).toMatchObject({ type: 'frame.captured', cameraId: 'dark' });
      expect((captured as { frameId: string }).frameId).toBe((e as { frameId: string }).frameId);
      const data = (captured as { data?: Record<string, unknown> }).data;
      expect(data).toMatchObject({ format: 'none', sizeBytes: 0, width: 160, height: 120 });
      // Black and, a still black picture, soon frozen too.
      expect(data?.flags).toContain('black');
      expect(e).toMatchObject({ source: 'capture', reason: 'black' });
      expect((e as { traceId?: string }).traceId).toMatch(/^[0-9a-f]{32}$/);
    }
    expect(await h.frames('dark')).toHaveLength(0);
    expect(await h.metric('detektr_frames_dropped_total', { reason: 'black' })).toBe(dark.length);
    expect(await h.metric('detektr_capture_dropped_total', { camera: 'dark', reason: 'black' })).toBe(dark.length);

    // A moving picture is neither frozen nor black; its thumbnails are stored beside the JPEG.
    const moving = await h.frameEvents('moving');
    expect(moving.length).toBeGreaterThan(3);
    expect(moving.every((e) => e.data?.flags === undefined)).toBe(true);
    expect((await h.cameraEvents('moving')).map((e) => e.type)).toEqual(['camera.online', 'camera.offline']);
    const last = moving[moving.length - 1];
    expect(last.data?.thumbnail).toEqual({
      key: h.t.keys.thumbnail(h.t.keys.payload(last.frameId)),
      width: 32,
      height: 24,
      format: 'gray8',
    });
    expect((await h.t.redis.getBuffer(h.t.keys.thumbnail(h.t.keys.payload(last.frameId))))!.length).toBe(32 * 24);
  });
});
