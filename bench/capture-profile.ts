// Where a camera reader's CPU goes, per stage, on frames of the bench's camera stream:
// the stream's packets are read once into memory, then each stage runs alone over them
// in one process, rounds alternated, CPU from process.cpuUsage (every thread).
//
//   npx tsx bench/capture-profile.ts <rtsp-url> [--seconds 8] [--rounds 3]
//
// Stages: decode (every packet, per decoded frame), the 10 fps sampled frames' checks (gray
// 64x36 + FrameChecker), range LUT, mjpeg (each Huffman mode) and the whole JpegEncoder as
// the reader calls it. With --stage <name> --count <n> it runs only that stage n times
// (after one warm pass), for instruction counts that the machine's load does not move:
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null npx tsx ... --stage lut --count 20
// and the same with another count: the difference / the count difference is per frame.
import '../src/capture/node-av-polyfill.js';
import { parseArgs } from 'node:util';
import { AV_PIX_FMT_YUV420P, AV_PKT_FLAG_KEY, SWS_AREA, SWS_BILINEAR, SWS_UNSTABLE } from 'node-av/constants';
import { Frame, type Packet } from 'node-av/lib';
import { DEFAULT_VALIDATION, FrameChecker } from '../src/capture/frame-check.js';
import { FullRange } from '../src/capture/full-range.js';
import { JpegEncoder } from '../src/capture/jpeg-encoder.js';
import { GrayScaler, Scaler } from '../src/capture/reader-scaler.js';
import { eqRange, lutyuvRange } from './lib/one-filter.js';
import { openDecoderFor, openSyncDecoder } from './lib/sync-decoder.js';
import { printTable } from './lib/table.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    stage: { type: 'string' },
    count: { type: 'string', default: '1' },
  },
});
const url = positionals[0];
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);

// The stream's packets from a key frame on, and its decoder parameters.
const src = openSyncDecoder(url, { rtsp_transport: 'tcp', probesize: '32768', analyzeduration: '500000', timeout: '5000000' });
const par = src.fmt.streams[src.index].codecpar;
const packets: Packet[] = [];
while (packets.length < SECONDS * 25 && src.fmt.readFrameSync(src.pkt) >= 0) {
  if (src.pkt.streamIndex === src.index && (packets.length > 0 || (src.pkt.flags & AV_PKT_FLAG_KEY) !== 0)) packets.push(src.pkt.clone()!);
  src.pkt.unref();
}

/** Decodes every stored packet; calls `each` with every decoded frame. */
function decodeAll(each?: (f: Frame, n: number) => void): number {
  const dec = openDecoderFor(par);
  const frame = new Frame();
  frame.alloc();
  let n = 0;
  for (const p of packets) {
    dec.sendPacketSync(p);
    while (dec.receiveFrameSync(frame) >= 0) {
      each?.(frame, n);
      n++;
      frame.unref();
    }
  }
  dec.sendPacketSync(null);
  while (dec.receiveFrameSync(frame) >= 0) n++;
  frame.free();
  dec.freeContext();
  return n;
}

// 10 fps of 25: 2 frames of every 5, as the reader's sampler keeps them.
const frames: Frame[] = [];
decodeAll((f, n) => (n % 5 === 0 || n % 5 === 2) && frames.push(f.clone()!));
const range = new FullRange();
const fullRange = frames.map((f) => range.convert(f).clone()!);

const gray = new GrayScaler(FrameChecker.WIDTH, FrameChecker.HEIGHT, SWS_AREA);
const checker = new FrameChecker(DEFAULT_VALIDATION);
const optimal = new JpegEncoder(80, undefined, { huffman: 'optimal' });
const standard = new JpegEncoder(80, undefined, { huffman: 'default' });
const readerDefault = new JpegEncoder(80); // colorspace filter + huffman=default
const rangeSws = new Scaler(SWS_BILINEAR);
const rangeSwsOps = new Scaler(SWS_BILINEAR | SWS_UNSTABLE);
const rangeLut = lutyuvRange();
const rangeEq = eqRange();

type Stage = { key: string; name: string; per: 'decoded' | 'sampled'; run: () => number };
let bytes = 0;
const overFrames =
  (fn: (f: Frame, i: number) => number | void, set = frames) =>
  () => {
    for (const [i, f] of set.entries()) bytes += fn(f, i) || 0;
    return set.length;
  };
const sameSize = (s: Scaler) => (f: Frame) => void s.scale(f, f.width, f.height, AV_PIX_FMT_YUV420P, true);
const stages: Stage[] = [
  { key: 'decode', name: 'decode (all 25 fps), per decoded frame', per: 'decoded', run: () => decodeAll() },
  {
    key: 'checks',
    name: 'checks: gray 64x36 + FrameChecker',
    per: 'sampled',
    run: overFrames((f, i) => void checker.check(gray.scale(f), i * 100, false)),
  },
  { key: 'range', name: 'range: colorspace filter (full-range.ts, now)', per: 'sampled', run: overFrames((f) => void range.convert(f)) },
  { key: 'lutyuv', name: 'range: lutyuv table (before)', per: 'sampled', run: overFrames((f) => void rangeLut.convert(f)) },
  { key: 'eq', name: 'range: eq filter (off by up to 1.4 levels)', per: 'sampled', run: overFrames((f) => void rangeEq.convert(f)) },
  { key: 'sws', name: 'range: swscale, same size', per: 'sampled', run: overFrames(sameSize(rangeSws)) },
  { key: 'sws-ops', name: 'range: swscale SWS_UNSTABLE (ops backend)', per: 'sampled', run: overFrames(sameSize(rangeSwsOps)) },
  {
    key: 'mjpeg-optimal',
    name: 'mjpeg alone, huffman=optimal',
    per: 'sampled',
    run: overFrames((f) => optimal.encode(f).jpeg.length, fullRange),
  },
  {
    key: 'mjpeg-default',
    name: 'mjpeg alone, huffman=default',
    per: 'sampled',
    run: overFrames((f) => standard.encode(f).jpeg.length, fullRange),
  },
  {
    key: 'reader-jpeg',
    name: 'JpegEncoder as the reader runs it',
    per: 'sampled',
    run: overFrames((f) => readerDefault.encode(f).jpeg.length),
  },
];

if (values.stage) {
  const stage = stages.find((s) => s.key === values.stage);
  if (!stage) throw new Error(`no stage ${values.stage}: ${stages.map((s) => s.key).join(', ')}`);
  stage.run(); // warm: first-call set-up (graphs, encoder contexts) is not per frame
  for (let k = 0; k < Number(values.count); k++) stage.run();
  process.exit(0);
}

const cpu: number[][] = stages.map(() => []);
const size: number[] = stages.map(() => 0);
for (let round = 0; round < ROUNDS; round++) {
  for (const [s, stage] of stages.entries()) {
    bytes = 0;
    const c0 = process.cpuUsage();
    const n = stage.run();
    const c = process.cpuUsage(c0);
    cpu[s].push((c.user + c.system) / 1000 / n);
    size[s] = bytes / n;
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const decodeMs = median(cpu[0]);
printTable(
  `Reader stages on ${frames[0].width}x${frames[0].height} frames of the stream: ${packets.length} packets, ${frames.length} sampled (10 fps), medians of ${ROUNDS} rounds`,
  stages.map((stage, s) => ({
    stage: stage.name,
    'CPU ms/frame': median(cpu[s]),
    'ms per second of video': median(cpu[s]) * (stage.per === 'decoded' ? 25 : 10),
    'x decode': (median(cpu[s]) * (stage.per === 'decoded' ? 25 : 10)) / (decodeMs * 25),
    'KiB/frame': size[s] ? size[s] / 1024 : '',
  })),
);
process.exit(0);
