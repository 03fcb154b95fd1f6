// The JPEG encoder setting: libjpeg-turbo (through koffi, on the library the optional
// package @julusian/jpeg-turbo ships) is what `auto` picks here; a library that does not
// load is a clear error for `turbojpeg` and a said fallback for `auto`; and at the same
// --jpeg-quality its pictures are at least as close to the source as mjpeg's (the decision
// of #15: less CPU, not less quality), measured as the PSNR of the decoded planes.
import '../../src/capture/node-av-polyfill.js';
import { execFileSync } from 'node:child_process';
import { Decoder, Demuxer } from 'node-av/api';
import { FF_DECODER_MJPEG } from 'node-av/constants';
import { Codec, CodecContext, Frame, Packet } from 'node-av/lib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JpegEncoder } from '../../src/capture/jpeg-encoder.js';
import { jpegEncoderReport, resolveJpegEncoder } from '../../src/capture/jpeg-encoder-setting.js';
import { FullRange } from '../../src/capture/full-range.js';
import { InvalidInputError } from '../../src/domain/errors.js';

/** A real shared library without the tj3 functions (this machine's libc). */
const libc = /libc\.so\.6 => (\S+)/.exec(execFileSync('ldd', [process.execPath], { encoding: 'utf8' }))![1];

describe('jpegEncoder setting', () => {
  it('auto takes libjpeg-turbo from the bundled library, and validate says which', () => {
    const r = resolveJpegEncoder('auto');
    expect(r.chosen).toBe('turbojpeg');
    expect(r.library).toMatch(/@julusian\/jpeg-turbo\/prebuilds\/jpeg-turbo-linux-[a-z0-9-]+\/libturbojpeg\.so\.0$/);
    expect(r.note).toBeUndefined();
    expect(jpegEncoderReport('auto')).toEqual({ status: 'ok', detail: `turbojpeg (setting auto; libturbojpeg ${r.library})` });
    expect(resolveJpegEncoder('mjpeg')).toEqual({ setting: 'mjpeg', chosen: 'mjpeg' });
  });

  it('a library that is not there: auto falls back to mjpeg and says why; turbojpeg refuses to start', () => {
    const r = resolveJpegEncoder('auto', '/nonexistent/libturbojpeg.so.0');
    expect(r.chosen).toBe('mjpeg');
    expect(r.note).toMatch(
      /^auto: libjpeg-turbo is not available \(cannot use \/nonexistent\/libturbojpeg\.so\.0: .*\), encoding with FFmpeg's mjpeg$/,
    );
    expect(() => resolveJpegEncoder('turbojpeg', '/nonexistent/libturbojpeg.so.0', '--jpeg-encoder')).toThrow(InvalidInputError);
    expect(() => resolveJpegEncoder('turbojpeg', '/nonexistent/libturbojpeg.so.0', '--jpeg-encoder')).toThrow(
      /^--jpeg-encoder: turbojpeg is not available: cannot use \/nonexistent\/libturbojpeg\.so\.0: .* \(use --jpeg-encoder auto or mjpeg\)$/,
    );
    expect(jpegEncoderReport('turbojpeg', '/nonexistent/libturbojpeg.so.0').status).toBe('fail');
  });

  it('a library without the TurboJPEG 3 API (libjpeg-turbo 2.x, or not libjpeg at all) names what is needed', () => {
    expect(() => resolveJpegEncoder('turbojpeg', libc)).toThrow(/libjpeg-turbo 3\.0 or later is needed/);
  });

  it('an unknown encoder lists the choices', () => {
    expect(() => resolveJpegEncoder('libjpeg', '', '--jpeg-encoder')).toThrow(
      /^--jpeg-encoder: "libjpeg" must be one of auto, turbojpeg, mjpeg$/,
    );
  });
});

describe('turbojpeg against mjpeg on the same frames', () => {
  const frames: Frame[] = [];
  const range = new FullRange();
  const jpegDecoder = new CodecContext();

  beforeAll(async () => {
    // testsrc2: detail, gradients and colour, in limited-range BT.601 like a camera's H.264.
    const input = await Demuxer.open('testsrc2=size=640x360:rate=25,format=yuv420p,trim=end_frame=6', { format: 'lavfi' });
    const decoder = await Decoder.create(input.video()!);
    for await (const f of decoder.frames(input.packets())) {
      if (!f) break;
      frames.push(f);
    }
    decoder.close();
    await input.close();
    const codec = Codec.findDecoderByName(FF_DECODER_MJPEG)!;
    jpegDecoder.allocContext3(codec);
    expect(jpegDecoder.open2Sync(codec, null)).toBe(0);
  });

  afterAll(() => {
    for (const f of frames) f.free();
    range.close();
    jpegDecoder.freeContext();
  });

  /** PSNR (dB) of a JPEG's planes (decoded by FFmpeg's mjpeg decoder) against the frame's full-range planes. */
  function psnr(jpeg: Buffer, f: Frame): number {
    const ref = range.convert(f);
    const pkt = new Packet();
    pkt.alloc();
    pkt.data = jpeg;
    const out = new Frame();
    out.alloc();
    expect(jpegDecoder.sendPacketSync(pkt)).toBe(0);
    expect(jpegDecoder.receiveFrameSync(out)).toBe(0);
    expect([out.width, out.height]).toEqual([f.width, f.height]);
    let se = 0;
    let n = 0;
    for (let p = 0; p < 3; p++) {
      const [w, h] = p ? [f.width / 2, f.height / 2] : [f.width, f.height];
      const [a, b] = [ref.data![p], out.data![p]];
      const [la, lb] = [ref.linesize[p], out.linesize[p]];
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) se += (a[y * la + x] - b[y * lb + x]) ** 2;
      n += w * h;
    }
    out.free();
    pkt.free();
    return 10 * Math.log10((255 * 255) / (se / n));
  }

  async function meanPsnr(encoder: JpegEncoder): Promise<{ db: number; bytes: number }> {
    let db = 0;
    let bytes = 0;
    for (const f of frames) {
      const { jpeg } = encoder.encode(f);
      db += psnr(jpeg, f);
      bytes += jpeg.length;
    }
    encoder.close();
    return { db: db / frames.length, bytes: bytes / frames.length };
  }

  it('at --jpeg-quality 80 the picture is at least as close to the source as mjpeg at 80', async () => {
    expect(frames.length).toBe(6);
    const turbo = await meanPsnr(new JpegEncoder(80, undefined, { encoder: 'turbojpeg' }));
    const mjpeg = await meanPsnr(new JpegEncoder(80, undefined, { encoder: 'mjpeg' }));
    expect(turbo.db, JSON.stringify({ turbo, mjpeg })).toBeGreaterThanOrEqual(mjpeg.db);
    // Both are real pictures of the source (a range or plane mistake costs far more).
    expect(mjpeg.db).toBeGreaterThan(33);
  });

  it('quality moves size and fidelity the libjpeg way; optimal tables: the same pixels, a smaller file', async () => {
    const q50 = await meanPsnr(new JpegEncoder(50, undefined, { encoder: 'turbojpeg' }));
    const q95 = await meanPsnr(new JpegEncoder(95, undefined, { encoder: 'turbojpeg' }));
    expect(q95.db).toBeGreaterThan(q50.db + 3);
    expect(q95.bytes).toBeGreaterThan(q50.bytes * 1.5);

    const standard = new JpegEncoder(80, undefined, { encoder: 'turbojpeg' });
    const optimal = new JpegEncoder(80, undefined, { encoder: 'turbojpeg', huffman: 'optimal' });
    const a = standard.encode(frames[2]).jpeg;
    const b = optimal.encode(frames[2]).jpeg;
    standard.close();
    optimal.close();
    expect(b.length).toBeLessThan(a.length);
    const [pa, pb] = await Promise.all([a, b].map((j) => sharp(j).raw().toBuffer()));
    expect(pa.equals(pb), 'Huffman coding is lossless').toBe(true);
  });

  it('each JPEG is a buffer of its own: the next frame does not overwrite the last', () => {
    const enc = new JpegEncoder(80, undefined, { encoder: 'turbojpeg' });
    const first = enc.encode(frames[0]).jpeg;
    const copy = Buffer.from(first);
    enc.encode(frames[5]);
    enc.close();
    expect(first.equals(copy)).toBe(true);
  });
});
