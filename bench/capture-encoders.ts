// JPEG encoders side by side on the same decoded frames of the bench's camera stream,
// in one process, rounds alternated (bench/capture.bench.ts runs this in a child process;
// alone: npx tsx bench/capture-encoders.ts <rtsp-url> [--frames 50] [--rounds 3]).
// CPU is the whole process's (process.cpuUsage: every thread, libvips' included), per
// frame; quality is the PSNR of the decoded JPEG (libjpeg-turbo, via sharp) against the
// full-range RGB of the source frame, at the same size.
import '../src/capture/node-av-polyfill.js';
import { parseArgs } from 'node:util';
import { AV_PIX_FMT_RGB24, SWS_BILINEAR } from 'node-av/constants';
import { Frame } from 'node-av/lib';
import sharp from 'sharp';
import { FullRange } from '../src/capture/full-range.js';
import { JpegEncoder } from '../src/capture/jpeg-encoder.js';
import { Scaler } from '../src/capture/reader-scaler.js';
import { openSyncDecoder } from './lib/sync-decoder.js';
import { eqRange, lutyuvRange } from './lib/one-filter.js';
import { printTable } from './lib/table.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    frames: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '3' },
    quality: { type: 'string', default: '80' },
  },
});
const url = positionals[0];
const FRAMES = Number(values.frames);
const ROUNDS = Number(values.rounds);
const QUALITY = Number(values.quality);
const REPEAT = 4; // encodes of each frame per round

function decodeFrames(): Frame[] {
  const { fmt, index, dec, pkt, frame } = openSyncDecoder(url, {
    rtsp_transport: 'tcp',
    probesize: '32768',
    analyzeduration: '500000',
    timeout: '5000000',
  });
  const out: Frame[] = [];
  // Every 2nd decoded frame (10 fps of 25, roughly), after the first second.
  let n = 0;
  while (out.length < FRAMES && fmt.readFrameSync(pkt) >= 0) {
    if (pkt.streamIndex === index && dec.sendPacketSync(pkt) >= 0) {
      while (dec.receiveFrameSync(frame) >= 0) {
        if (++n > 25 && n % 2 === 0 && out.length < FRAMES) out.push(frame.clone()!);
        frame.unref();
      }
    }
    pkt.unref();
  }
  dec.freeContext();
  fmt.closeInputSync();
  return out;
}

const frames = decodeFrames();
const { width: W, height: H } = frames[0];
const rgbScaler = new Scaler(SWS_BILINEAR);
/** Packed full-range RGB of a frame (what libjpeg-turbo takes, and the PSNR reference). */
function rgb(f: Frame): Buffer {
  const o = rgbScaler.scale(f, W, H, AV_PIX_FMT_RGB24, true);
  const ls = o.linesize[0];
  const src = o.data![0];
  const b = Buffer.allocUnsafe(W * H * 3);
  for (let y = 0; y < H; y++) src.copy(b, y * W * 3, y * ls, y * ls + W * 3);
  return b;
}
// A full-range copy of each frame: what a camera that sends full range gives the encoder.
const toFull = new FullRange();
const fullRange = frames.map((f) => toFull.convert(f).clone()!);

sharp.concurrency(1);
const older = new JpegEncoder(QUALITY, undefined, { path: 'swscale' });
const planesOpt = new JpegEncoder(QUALITY, undefined, { huffman: 'optimal' });
const planes = new JpegEncoder(QUALITY); // the default: huffman=default
const small = new JpegEncoder(QUALITY, 640);
const rangeScaler = new Scaler(SWS_BILINEAR);
const rangeNow = new FullRange();
const rangeLut = lutyuvRange();
const rangeEq = eqRange();

type Encode = (i: number) => Buffer | Promise<Buffer> | undefined;
const variants: { what: string; encode: Encode; psnr: boolean }[] = [
  { what: 'FFmpeg mjpeg, range by swscale first (older), huffman=default', encode: (i) => older.encode(frames[i]).jpeg, psnr: true },
  {
    what: 'FFmpeg mjpeg from the planes, range by lutyuv table, huffman=optimal (before)',
    encode: (i) => planesOpt.encode(rangeLut.convert(frames[i])).jpeg,
    psnr: true,
  },
  { what: 'FFmpeg mjpeg from the planes, colorspace filter, huffman=optimal', encode: (i) => planesOpt.encode(frames[i]).jpeg, psnr: true },
  {
    what: 'FFmpeg mjpeg from the planes, colorspace filter, huffman=default (now)',
    encode: (i) => planes.encode(frames[i]).jpeg,
    psnr: true,
  },
  {
    what: `libjpeg-turbo (sharp ${sharp.versions.sharp}), swscale to RGB first`,
    encode: (i) =>
      sharp(rgb(frames[i]), { raw: { width: W, height: H, channels: 3 } })
        .jpeg({ quality: QUALITY })
        .toBuffer(),
    psnr: true,
  },
  {
    what: 'FFmpeg mjpeg, full-range source (no conversion), huffman=optimal',
    encode: (i) => planesOpt.encode(fullRange[i]).jpeg,
    psnr: true,
  },
  { what: 'FFmpeg mjpeg, full-range source (no conversion), huffman=default', encode: (i) => planes.encode(fullRange[i]).jpeg, psnr: true },
  { what: 'FFmpeg mjpeg, --jpeg-width 640 (one swscale pass)', encode: (i) => small.encode(frames[i]).jpeg, psnr: false },
  {
    what: '  range conversion alone: swscale',
    encode: (i) => void rangeScaler.scale(frames[i], W, H, frames[i].format as never, true),
    psnr: false,
  },
  { what: '  range conversion alone: lutyuv table (before)', encode: (i) => void rangeLut.convert(frames[i]), psnr: false },
  { what: '  range conversion alone: colorspace filter (now)', encode: (i) => void rangeNow.convert(frames[i]), psnr: false },
  { what: '  range conversion alone: eq filter (up to 1.4 levels off)', encode: (i) => void rangeEq.convert(frames[i]), psnr: false },
];

const cpu: number[][] = variants.map(() => []);
const bytes: number[] = variants.map(() => 0);
for (let round = 0; round < ROUNDS; round++) {
  for (const [v, variant] of variants.entries()) {
    for (let i = 0; i < 5; i++) await variant.encode(i % frames.length); // warm
    let size = 0;
    const c0 = process.cpuUsage();
    for (let k = 0; k < REPEAT; k++) for (let i = 0; i < frames.length; i++) size += (await variant.encode(i))?.length ?? 0;
    const c = process.cpuUsage(c0);
    cpu[v].push((c.user + c.system) / 1000 / (REPEAT * frames.length));
    bytes[v] = size / (REPEAT * frames.length);
  }
}

async function psnr(encode: Encode): Promise<number> {
  let se = 0;
  let n = 0;
  for (let i = 0; i < frames.length; i += 5) {
    const jpeg = (await encode(i))!;
    const ref = rgb(frames[i]);
    const { data } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    for (let k = 0; k < ref.length; k++) se += (ref[k] - data[k]) ** 2;
    n += ref.length;
  }
  return 10 * Math.log10((255 * 255) / (se / n));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = median(cpu[1]); // the default before this change
const rows: Record<string, string | number>[] = [];
for (const [v, variant] of variants.entries()) {
  rows.push({
    what: variant.what,
    'CPU ms/frame': median(cpu[v]),
    'x before': median(cpu[v]) / base,
    'KiB/frame': bytes[v] ? bytes[v] / 1024 : '',
    'PSNR dB (RGB)': variant.psnr ? await psnr(variant.encode) : '',
  });
}
printTable(
  `JPEG q${QUALITY} of ${W}x${H} frames of the stream, ${frames.length} frames x ${REPEAT} per round, medians of ${ROUNDS} rounds (CPU of the whole process per frame)`,
  rows,
);
for (const f of [...frames, ...fullRange]) f.free();
for (const e of [older, planes, planesOpt, small, rangeScaler, rangeNow, rangeLut, rangeEq, toFull, rgbScaler]) e.close();
process.exit(0);
