import '../../src/capture/node-av-polyfill.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Decoder, Demuxer, Encoder, Muxer, pipeline } from 'node-av/api';
import { FF_ENCODER_LIBX264 } from 'node-av/constants';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  openVideoSource,
  ReaderThread,
  type CapturedImage,
  type OpenInfo,
  type ReaderStats,
  type VideoSourceOptions,
} from '../../src/capture/video-source.js';
import type { SourceTimeoutError } from '../../src/capture/source-errors.js';
import { ConnectionError, InvalidInputError, TimeoutError } from '../../src/domain/errors.js';
import { makeMp4 } from '../helpers/make-mp4.js';

const TESTSRC = 'testsrc2=size=640x360:rate=25';

async function take(opts: VideoSourceOptions, n: number): Promise<CapturedImage[]> {
  const out: CapturedImage[] = [];
  if (n === 0) return out;
  for await (const img of openVideoSource(opts)) {
    out.push(img);
    if (out.length === n) break;
  }
  return out;
}

async function failure(opts: VideoSourceOptions): Promise<Error> {
  try {
    await take(opts, 1);
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the source to fail');
}

/** Width and height from the JPEG's SOFn header. */
function jpegSize(jpeg: Buffer): { width: number; height: number } {
  for (let i = 2; i + 8 < jpeg.length;) {
    if (jpeg[i] !== 0xff) throw new Error(`bad JPEG marker at ${i}`);
    const marker = jpeg[i + 1];
    if (marker >= 0xc0 && marker <= 0xc3) return { height: jpeg.readUInt16BE(i + 5), width: jpeg.readUInt16BE(i + 7) };
    i += 2 + jpeg.readUInt16BE(i + 2);
  }
  throw new Error('no SOF marker');
}

function expectJpeg(img: CapturedImage, width: number, height: number): void {
  expect(img.jpeg.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
  expect(img.jpeg.subarray(-2)).toEqual(Buffer.from([0xff, 0xd9]));
  expect({ width: img.width, height: img.height }).toEqual({ width, height });
  expect(jpegSize(img.jpeg)).toEqual({ width, height });
}

interface TestServer {
  port: number;
  sockets: Set<Socket>;
  close(): Promise<void>;
}

async function listen(onConnection: (s: Socket) => void): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}

/** Accepts connections and never answers: a hung camera. Reads, so it sees the client hang up. */
function silentServer(): Promise<TestServer> {
  return listen((s) => s.resume());
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** RTP packets of 2 s of 320x240 25 fps H.264, grouped by frame (same RTP timestamp). */
async function makeRtpFrames(): Promise<Buffer[][]> {
  const packets: Buffer[] = [];
  const input = await Demuxer.open('testsrc2=size=320x240:rate=25,format=yuv420p,trim=end_frame=50', {
    format: 'lavfi',
  });
  try {
    const decoder = await Decoder.create(input.video()!);
    const encoder = await Encoder.create(FF_ENCODER_LIBX264, {
      decoder,
      gopSize: 25,
      maxBFrames: 0,
      options: { preset: 'ultrafast', tune: 'zerolatency' },
    });
    const write = (b: Buffer): number => packets.push(Buffer.from(b)) && b.length;
    const output = await Muxer.open({ write }, { format: 'rtp', maxPacketSize: 1400 });
    try {
      await pipeline(input, decoder, encoder, output).completion;
    } finally {
      await output.close();
      encoder.close();
      decoder.close();
    }
  } finally {
    await input.close();
  }
  const frames = new Map<number, Buffer[]>();
  for (const p of packets) {
    if (p[1] >= 200 && p[1] <= 204) continue; // the muxer's RTCP sender reports: not needed
    const ts = p.readUInt32BE(4);
    frames.set(ts, [...(frames.get(ts) ?? []), p]);
  }
  return [...frames.values()];
}

/** An RTP packet (header of `like`) carrying one H.264 filler-data NAL unit, marker set. */
function fillerPacket(like: Buffer, n: number): Buffer {
  const head = Buffer.from(like.subarray(0, 12));
  head[1] = 0x80 | (head[1] & 0x7f);
  head.writeUInt32BE((n * 3600) >>> 0, 4);
  return Buffer.concat([head, Buffer.from([0x0c, 0xff, 0xff, 0xff, 0x80])]);
}

const SDP = [
  'v=0',
  'o=- 0 0 IN IP4 127.0.0.1',
  's=detektr test camera',
  'c=IN IP4 0.0.0.0',
  't=0 0',
  'm=video 0 RTP/AVP 96',
  'a=rtpmap:96 H264/90000',
  'a=fmtp:96 packetization-mode=1',
  'a=control:trackID=0',
  '',
].join('\r\n');

/**
 * A minimal live RTSP camera (RTP over the RTSP connection, as with rtsp_transport=tcp)
 * looping pre-encoded H.264 at 25 fps. `stall()` keeps connections open but stops sending.
 */
interface FakeCamera extends TestServer {
  /** Keep the connection, send nothing. */
  stall(): void;
  /** Lose the next n RTP packets (a lossy link). */
  lose(n: number): void;
  /** Keep sending RTP packets, but only filler data: the decoder never gets a picture. */
  garbage(): void;
}

async function fakeCamera(frames: Buffer[][]): Promise<FakeCamera> {
  let stalled = false;
  let toLose = 0;
  let filler = false;
  const timers = new Set<NodeJS.Timeout>();
  const server = await listen((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (buf[0] === 0x24) {
          // Interleaved RTCP from the client: skip it.
          if (buf.length < 4 || buf.length < 4 + buf.readUInt16BE(2)) return;
          buf = buf.subarray(4 + buf.readUInt16BE(2));
          continue;
        }
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        buf = buf.subarray(end + 4);
        const [method, url] = head.split(' ');
        const cseq = /CSeq: *(\d+)/i.exec(head)?.[1] ?? '0';
        const reply = (headers: string[], body = ''): void => {
          s.write([`RTSP/1.0 200 OK`, `CSeq: ${cseq}`, ...headers, `Content-Length: ${body.length}`, '', body].join('\r\n'));
        };
        if (method === 'DESCRIBE') reply([`Content-Base: ${url}/`, 'Content-Type: application/sdp'], SDP);
        else if (method === 'SETUP') reply(['Transport: RTP/AVP/TCP;unicast;interleaved=0-1', 'Session: 1234;timeout=60']);
        else if (method === 'PLAY') {
          reply(['Session: 1234']);
          play(s);
        } else reply(['Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER', 'Session: 1234']);
      }
    });
  });

  function play(s: Socket): void {
    let n = 0;
    let seq = 0;
    const timer = setInterval(() => {
      if (stalled || s.destroyed) return;
      const loop = Math.floor(n / frames.length);
      const packets = filler ? [fillerPacket(frames[0][0], n)] : frames[n % frames.length];
      for (const p of packets) {
        if (toLose > 0) {
          toLose--;
          seq++;
          continue;
        }
        const rtp = Buffer.from(p);
        rtp.writeUInt16BE(seq++ & 0xffff, 2);
        rtp.writeUInt32BE((p.readUInt32BE(4) + loop * frames.length * 3600) >>> 0, 4);
        const head = Buffer.from([0x24, 0, 0, 0]);
        head.writeUInt16BE(rtp.length, 2);
        s.write(Buffer.concat([head, rtp]));
      }
      n++;
    }, 40);
    timers.add(timer);
    s.on('close', () => clearInterval(timer));
  }

  return {
    ...server,
    stall: () => {
      stalled = true;
    },
    lose: (n: number) => {
      toLose = n;
    },
    garbage: () => {
      filler = true;
    },
    close: () => {
      timers.forEach(clearInterval);
      return server.close();
    },
  };
}

describe('openVideoSource: lavfi', () => {
  // Started ahead, so that the timing below is the source's, not a fresh thread's start-up.
  const thread = new ReaderThread();
  beforeAll(() => take({ url: 'color=black:size=32x32:rate=25', kind: 'lavfi', fps: 25, thread }, 1));
  afterAll(() => thread.close());

  it('yields ~10 JPEGs per second at fps 10, paced to real time', async () => {
    const started = performance.now();
    const frames = await take({ url: TESTSRC, kind: 'lavfi', fps: 10, thread }, 10);
    const elapsed = performance.now() - started;

    expect(frames).toHaveLength(10);
    for (const img of frames) {
      expectJpeg(img, 640, 360);
      expect(img.encodeMs).toBeGreaterThan(0);
      expect(img.capturedAt).toBeGreaterThan(Date.now() - 10_000);
    }
    // 25 fps sampled to 10: every 2.5 source frames, on a 40 ms grid.
    const steps = frames.slice(1).map((f, i) => f.ptsMs - frames[i].ptsMs);
    for (const step of steps) expect([80, 120]).toContain(step);
    expect(frames.map((f) => f.ptsMs)).toEqual([0, 120, 200, 320, 400, 520, 600, 720, 800, 920]);
    // Paced like ffmpeg -re: frame 10 is due 0.92 s after frame 1.
    expect(elapsed).toBeGreaterThanOrEqual(700);
    // Loose: a busy machine may be slower, never faster.
    expect(elapsed).toBeLessThan(6000);
    const wall = frames[9].capturedAt - frames[0].capturedAt;
    expect(wall).toBeGreaterThanOrEqual(800);
  });

  it('downscales to maxWidth keeping the aspect ratio', async () => {
    const [img] = await take({ url: 'testsrc2=size=1280x720:rate=25', kind: 'lavfi', fps: 25, maxWidth: 320 }, 1);
    expectJpeg(img, 320, 180);
  });

  it('keeps every frame when fps is above the native rate', async () => {
    const frames = await take({ url: 'color=black:size=160x120:rate=25', kind: 'lavfi', fps: 50 }, 5);
    expect(frames.map((f) => f.ptsMs)).toEqual([0, 40, 80, 120, 160]);
    expectJpeg(frames[0], 160, 120);
  });

  it('gives smaller JPEGs at lower quality', async () => {
    const [hi] = await take({ url: TESTSRC, kind: 'lavfi', fps: 25, jpegQuality: 95 }, 1);
    const [lo] = await take({ url: TESTSRC, kind: 'lavfi', fps: 25, jpegQuality: 10 }, 1);
    expect(lo.jpeg.length).toBeLessThan(hi.jpeg.length / 2);
  });

  it('ends soon after an abort, even mid-wait', async () => {
    const ac = new AbortController();
    const frames: CapturedImage[] = [];
    let abortedAt = 0;
    // fps 0.1: after the first frame the source waits 10 s for the next one; the bound
    // below tells an abort that ends the wait from one that waits it out, on a loaded machine too.
    for await (const img of openVideoSource({ url: TESTSRC, kind: 'lavfi', fps: 0.1, signal: ac.signal })) {
      frames.push(img);
      setTimeout(() => {
        abortedAt = performance.now();
        ac.abort();
      }, 200);
    }
    expect(performance.now() - abortedAt).toBeLessThan(5000);
    expect(frames).toHaveLength(1);
  });

  it('yields nothing when already aborted', async () => {
    const frames = await take({ url: TESTSRC, kind: 'lavfi', fps: 10, signal: AbortSignal.abort() }, 1);
    expect(frames).toHaveLength(0);
  });

  it('ends when a finite lavfi graph ends', async () => {
    const frames = await take({ url: 'testsrc2=size=160x120:rate=25:duration=0.2', kind: 'lavfi', fps: 25 }, 100);
    expect(frames).toHaveLength(5);
  });

  it('reports a bad filter graph naming it', async () => {
    const err = await failure({ url: 'nosuchfilter=rate=25', kind: 'lavfi', fps: 10 });
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.message).toContain('Cannot open video source "lavfi:nosuchfilter=rate=25"');
    expect(err.cause).toBeInstanceOf(Error);
  });
});

describe('openVideoSource: files', () => {
  let dir: string;
  let mp4: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'detektr-video-'));
    mp4 = join(dir, 'ten-frames.mp4');
    await makeMp4(mp4, 10);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('decodes an mp4 once when loop is false', async () => {
    const frames = await take({ url: mp4, kind: 'file', fps: 25, loop: false }, 100);
    expect(frames).toHaveLength(10);
    expectJpeg(frames[0], 320, 240);
    expect(frames.map((f) => f.ptsMs)).toEqual([0, 40, 80, 120, 160, 200, 240, 280, 320, 360]);
  });

  it('loops an mp4 with a continuous, increasing timeline, paced to real time', async () => {
    const started = performance.now();
    const frames = await take({ url: mp4, kind: 'file', fps: 25 }, 25);
    const elapsed = performance.now() - started;
    expect(frames).toHaveLength(25);
    expect(frames.map((f) => f.ptsMs)).toEqual(Array.from({ length: 25 }, (_, i) => i * 40));
    expect(elapsed).toBeGreaterThanOrEqual(900);
    // Same picture one loop apart: it really reopened the file.
    expect(frames[10].jpeg.equals(frames[0].jpeg)).toBe(true);
  });

  it('reports a missing file naming its path', async () => {
    const path = join(dir, 'no-such-video.mp4');
    const err = await failure({ url: path, kind: 'file', fps: 10 });
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.message).toBe(`Cannot open video source "${path}": No such file or directory`);
    expect(err.cause).toBeInstanceOf(Error);
  });
});

describe('openVideoSource: rtsp', () => {
  let rtpFrames: Buffer[][];
  let hung: TestServer;
  // Started ahead, so that timings below are the source's, not a fresh thread's start-up.
  const warm = [new ReaderThread(), new ReaderThread()];
  beforeAll(async () => {
    rtpFrames = await makeRtpFrames();
    hung = await silentServer();
    await Promise.all(warm.map((thread) => take({ url: 'color=black:size=32x32:rate=25', kind: 'lavfi', fps: 25, thread }, 1)));
  });
  afterAll(async () => {
    warm.forEach((t) => t.close());
    await hung.close();
  });

  it('reads a live camera without pacing and keeps the password out of errors', async () => {
    const cam = await fakeCamera(rtpFrames);
    try {
      const started = performance.now();
      const frames = await take({ url: `rtsp://admin:secret@127.0.0.1:${cam.port}/cam`, kind: 'rtsp', fps: 5 }, 5);
      expect(frames).toHaveLength(5);
      for (const img of frames) expectJpeg(img, 320, 240);
      const steps = frames.slice(1).map((f, i) => f.ptsMs - frames[i].ptsMs);
      expect(steps).toEqual([200, 200, 200, 200]);
      // Open (~0.2 s) + 0.8 s of stream: live frames come as the camera sends them.
      expect(performance.now() - started).toBeLessThan(6000);
    } finally {
      await cam.close();
    }
  });

  it('fails with a timeout when a camera stops sending, and frees the connection', async () => {
    const cam = await fakeCamera(rtpFrames);
    const url = `rtsp://admin:secret@127.0.0.1:${cam.port}/cam`;
    let stalledAt = 0;
    let frames = 0;
    try {
      for await (const img of openVideoSource({ url, kind: 'rtsp', fps: 10, readTimeoutMs: 1000 })) {
        expect(img.width).toBe(320);
        if (++frames === 3) {
          cam.stall();
          stalledAt = performance.now();
        }
      }
      throw new Error('expected a read timeout');
    } catch (err) {
      expect(err).toBeInstanceOf(TimeoutError);
      expect((err as Error).message).toMatch(
        new RegExp(`^(Cannot read from|Timed out after \\d+ ms reading) video source "rtsp://admin:\\*\\*\\*@127.0.0.1:${cam.port}/cam"`),
      );
      // readTimeoutMs plus the frames already buffered before the stall (about 1.2 s idle);
      // far from the alternative, a read blocked for good.
      expect(performance.now() - stalledAt).toBeLessThan(8000);
      await until(() => cam.sockets.size === 0, 2000);
    } finally {
      await cam.close();
    }
  });

  it('ends soon when aborted during a stalled read, before the read times out, freeing the connection later', async () => {
    const cam = await fakeCamera(rtpFrames);
    const ac = new AbortController();
    let abortedAt = 0;
    try {
      const source = openVideoSource({
        url: `rtsp://127.0.0.1:${cam.port}/cam`,
        kind: 'rtsp',
        fps: 10,
        readTimeoutMs: 6000,
        signal: ac.signal,
      });
      for await (const _ of source) {
        cam.stall();
        setTimeout(() => {
          abortedAt = performance.now();
          ac.abort();
        }, 500);
      }
      // (~0.1 s idle; without the abort it would end at the read timeout, 6 s.)
      expect(performance.now() - abortedAt).toBeLessThan(4000);
      // FFmpeg's read gives up after ~6 s of silence; only then can the context be freed.
      await until(() => cam.sockets.size === 0, 15_000);
    } finally {
      await cam.close();
    }
  });

  it('reports a camera that hangs up as an ended stream', async () => {
    const cam = await fakeCamera(rtpFrames);
    const url = `rtsp://u:secret@127.0.0.1:${cam.port}/cam`;
    let frames = 0;
    try {
      for await (const _ of openVideoSource({ url, kind: 'rtsp', fps: 10 })) {
        if (++frames === 2) cam.sockets.forEach((s) => s.destroy());
      }
      throw new Error('expected the stream to end with an error');
    } catch (err) {
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as Error).message).toContain(`"rtsp://u:***@127.0.0.1:${cam.port}/cam"`);
      expect((err as Error).message).not.toContain('secret');
    } finally {
      await cam.close();
    }
  });

  it('times out opening a camera that never answers', async () => {
    const url = `rtsp://admin:secret@127.0.0.1:${hung.port}/cam`;
    const started = performance.now();
    const err = await failure({ url, kind: 'rtsp', fps: 5, openTimeoutMs: 800, readTimeoutMs: 10_000, thread: warm[0] });
    // Well before FFmpeg's own timeout (5 s), so it was ours.
    expect(performance.now() - started).toBeLessThan(4000);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.message).toBe(`Timed out after 800 ms opening video source "rtsp://admin:***@127.0.0.1:${hung.port}/cam"`);
    // The abandoned native open ends at FFmpeg's own timeout (5 s); then it is freed.
    await until(() => hung.sockets.size === 0, 15_000);
  });

  it("reports FFmpeg's own RTSP timeout (readTimeoutMs / 2 of silence) as a timeout", async () => {
    const url = `rtsp://admin:secret@127.0.0.1:${hung.port}/cam`;
    const started = performance.now();
    const err = await failure({ url, kind: 'rtsp', fps: 5, openTimeoutMs: 20_000, readTimeoutMs: 1000, thread: warm[1] });
    // Well before openTimeoutMs, so it was FFmpeg's.
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.message).toBe(`Timed out after 500 ms opening video source "rtsp://admin:***@127.0.0.1:${hung.port}/cam"`);
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('ends promptly when aborted while opening', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const started = performance.now();
    const frames = await take(
      { url: `rtsp://127.0.0.1:${hung.port}/cam`, kind: 'rtsp', fps: 5, signal: ac.signal, readTimeoutMs: 6000 },
      1,
    );
    expect(frames).toHaveLength(0);
    // Well before FFmpeg's open timeout (3 s), which would have ended it with an error.
    expect(performance.now() - started).toBeLessThan(2500);
  });

  it('names the redacted url when the camera refuses the connection', async () => {
    const closed = await silentServer();
    await closed.close();
    const err = await failure({ url: `rtsp://u:secret@127.0.0.1:${closed.port}/x`, kind: 'rtsp', fps: 5 });
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.message).toBe(`Cannot open video source "rtsp://u:***@127.0.0.1:${closed.port}/x": Connection refused`);
  });
});

describe('openVideoSource: options', () => {
  it.each([
    [{ fps: 0 }, /fps must be/],
    [{ fps: Number.NaN }, /fps must be/],
    [{ jpegQuality: 0 }, /jpegQuality/],
    [{ jpegQuality: 101 }, /jpegQuality/],
    [{ maxWidth: 4 }, /maxWidth/],
    [{ openTimeoutMs: 0 }, /timeouts/],
  ])('rejects %j at once', (bad, message) => {
    expect(() => openVideoSource({ url: TESTSRC, kind: 'lavfi', fps: 10, ...bad })).toThrow(InvalidInputError);
    expect(() => openVideoSource({ url: TESTSRC, kind: 'lavfi', fps: 10, ...bad })).toThrow(message);
  });

  it('does not leak the password through option errors', () => {
    expect(() => openVideoSource({ url: 'rtsp://u:secret@h/x', kind: 'rtsp', fps: -1 })).toThrow(
      'Video source "rtsp://u:***@h/x": fps must be in (0, 1000], got -1',
    );
  });
});

describe('openVideoSource: validation, thumbnails, stalls, backlog', () => {
  const BLACK = 'color=black:size=160x120:rate=25';

  it('flags black frames, and with policy drop does not encode them', async () => {
    const kept = await take({ url: BLACK, kind: 'lavfi', fps: 25 }, 3);
    for (const f of kept) {
      expect(f.flags).toContain('black');
      expect(f.drop).toBeUndefined();
      expectJpeg(f, 160, 120);
    }
    const dropped = await take(
      { url: BLACK, kind: 'lavfi', fps: 25, validation: { policy: { corrupt: 'drop', black: 'drop', frozen: 'flag' } } },
      3,
    );
    for (const f of dropped) {
      expect(f.drop).toBe('black');
      expect(f.jpeg.length).toBe(0);
      expect({ width: f.width, height: f.height }).toEqual({ width: 160, height: 120 });
    }
  });

  it('flags a still picture as frozen once it stayed still for frozenAfterMs, and not a moving one', async () => {
    const still = await take({ url: 'color=c=gray:size=160x120:rate=25', kind: 'lavfi', fps: 10, validation: { frozenAfterMs: 300 } }, 8);
    expect(still[0].flags).toEqual([]);
    expect(still[7].flags).toEqual(['frozen']);
    expect(still[7].frozenForMs).toBeGreaterThanOrEqual(300);
    const frozenAt = still.findIndex((f) => f.flags.includes('frozen'));
    expect(still.slice(frozenAt).every((f) => f.flags.includes('frozen'))).toBe(true);
    const moving = await take({ url: TESTSRC, kind: 'lavfi', fps: 10, validation: { frozenAfterMs: 300 } }, 8);
    expect(moving.every((f) => f.flags.length === 0 && f.frozenForMs === 0)).toBe(true);
  });

  it('adds a gray thumbnail of the requested width, keeping the aspect ratio', async () => {
    const [img] = await take({ url: TESTSRC, kind: 'lavfi', fps: 25, thumbnailWidth: 64 }, 1);
    expect(img.thumbnail).toMatchObject({ width: 64, height: 36 });
    expect(img.thumbnail!.data.length).toBe(64 * 36);
    expect(new Set(img.thumbnail!.data).size).toBeGreaterThan(10);
    const [none] = await take({ url: TESTSRC, kind: 'lavfi', fps: 25 }, 1);
    expect(none.thumbnail).toBeUndefined();
  });

  it('reports what it opened, decode times and the reader thread CPU', async () => {
    const opened: OpenInfo[] = [];
    const stats: ReaderStats[] = [];
    await take({ url: TESTSRC, kind: 'lavfi', fps: 25, onOpen: (i) => opened.push(i), onStats: (s) => stats.push(s) }, 30);
    expect(opened).toEqual([
      { codec: 'wrapped_avframe', width: 640, height: 360, nativeFps: 25, url: `lavfi:${TESTSRC}`, decode: 'software' },
    ]);
    const decodes = stats.flatMap((s) => s.decodeMs);
    expect(decodes.length).toBeGreaterThan(0);
    expect(decodes.every((ms) => ms >= 0)).toBe(true);
    expect(stats.reduce((a, s) => a + s.cpuMs, 0)).toBeGreaterThan(0);
  });

  it('discards the oldest frames for a consumer that falls behind, and says how many', async () => {
    const frames: CapturedImage[] = [];
    for await (const img of openVideoSource({ url: 'testsrc2=size=160x120:rate=25', kind: 'lavfi', fps: 25, maxQueued: 3 })) {
      frames.push(img);
      // 2 s behind is 50 frames at 25 fps: well over the 3 kept, even from a starved reader.
      if (frames.length === 1) await new Promise((r) => setTimeout(r, 2000));
      if (frames.length === 6) break;
    }
    const discarded = frames.reduce((n, f) => n + f.backlogDropped, 0);
    expect(discarded).toBeGreaterThan(5);
    // Whatever was discarded, the rest is in order.
    const pts = frames.map((f) => f.ptsMs);
    expect([...pts].sort((a, b) => a - b)).toEqual(pts);
  });
});

describe('openVideoSource: damaged and silent live streams', () => {
  let rtpFrames: Buffer[][];
  beforeAll(async () => {
    rtpFrames = await makeRtpFrames();
  });

  it('flags frames decoded after a lost packet as corrupt until the next key frame', async () => {
    const cam = await fakeCamera(rtpFrames);
    const frames: CapturedImage[] = [];
    try {
      const policy = { corrupt: 'flag', black: 'flag', frozen: 'off' } as const;
      for await (const img of openVideoSource({ url: `rtsp://127.0.0.1:${cam.port}/cam`, kind: 'rtsp', fps: 25, validation: { policy } })) {
        frames.push(img);
        if (frames.length === 5) cam.lose(1);
        if (frames.length === 60) break;
      }
    } finally {
      await cam.close();
    }
    const corrupt = frames.map((f) => f.flags.includes('corrupt'));
    const first = corrupt.indexOf(true);
    expect(first).toBeGreaterThanOrEqual(4);
    // The damage lasts until a key frame (every 25 frames), then pictures are clean again.
    expect(corrupt.slice(first + 26).some((c) => c)).toBe(false);
    expect(corrupt.slice(0, 4).some((c) => c)).toBe(false);
    // Flagged, not dropped (policy flag): still encoded.
    expect(frames[first].jpeg.length).toBeGreaterThan(0);
  });

  it('drops corrupt frames by default', async () => {
    const cam = await fakeCamera(rtpFrames);
    const frames: CapturedImage[] = [];
    try {
      for await (const img of openVideoSource({ url: `rtsp://127.0.0.1:${cam.port}/cam`, kind: 'rtsp', fps: 25 })) {
        frames.push(img);
        if (frames.length === 3) cam.lose(1);
        if (frames.length === 20) break;
      }
    } finally {
      await cam.close();
    }
    const dropped = frames.filter((f) => f.drop);
    expect(dropped.length).toBeGreaterThan(0);
    expect(dropped.every((f) => f.drop === 'corrupt' && f.jpeg.length === 0)).toBe(true);
  });

  it('fails a camera that keeps sending packets but no picture (stall watchdog)', async () => {
    const cam = await fakeCamera(rtpFrames);
    let frames = 0;
    let garbageAt = 0;
    try {
      const source = openVideoSource({
        url: `rtsp://u:secret@127.0.0.1:${cam.port}/cam`,
        kind: 'rtsp',
        fps: 10,
        readTimeoutMs: 15_000,
        stallTimeoutMs: 1000,
      });
      for await (const _ of source) {
        if (++frames === 2) {
          cam.garbage();
          garbageAt = performance.now();
        }
      }
      throw new Error('expected a stall');
    } catch (err) {
      expect(err).toBeInstanceOf(TimeoutError);
      expect((err as SourceTimeoutError).reason).toBe('stalled');
      expect((err as Error).message).toBe(`No frame decoded for 1000 ms from video source "rtsp://u:***@127.0.0.1:${cam.port}/cam"`);
      // Well before the 15 s read timeout: packets kept coming.
      expect(performance.now() - garbageAt).toBeLessThan(10_000);
    } finally {
      await cam.close();
    }
  });
});
