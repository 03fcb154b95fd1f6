// Colour levels of capture's JPEGs, decoded by libjpeg-turbo (sharp), not by FFmpeg: a
// JPEG is full range by definition, so a limited-range picture written as is looks washed
// out (black at 16, 75 % white at 180), and a range converted twice looks too hard. The
// source is FFmpeg's SMPTE colour bars (BT.601, limited range, 75 % bars: 191 or 0 per
// RGB channel), taken through each way a frame reaches the encoder.
import '../../src/capture/node-av-polyfill.js';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { openVideoSource, type CapturedImage, type VideoSourceOptions } from '../../src/capture/video-source.js';

const BARS = 'smptebars=size=640x360:rate=25';
// Top two thirds of smptebars, left to right: white, yellow, cyan, green, magenta, red, blue.
const EXPECTED: [number, number, number][] = [
  [191, 191, 191],
  [191, 191, 0],
  [0, 191, 191],
  [0, 191, 0],
  [191, 0, 191],
  [191, 0, 0],
  [0, 0, 191],
];
// JPEG q80 and 4:2:0 chroma at the middle of a bar move a channel by a few levels; a
// range mistake moves white or black by 11 or more.
const TOLERANCE = 6;

async function firstJpeg(opts: Omit<VideoSourceOptions, 'fps' | 'kind'>): Promise<CapturedImage> {
  for await (const img of openVideoSource({
    kind: 'lavfi',
    fps: 5,
    validation: { policy: { corrupt: 'off', black: 'off', frozen: 'off' } },
    ...opts,
  })) {
    return img;
  }
  throw new Error('no frame');
}

/** RGB at the middle of each bar, decoded by libjpeg-turbo. */
async function barLevels(jpeg: Buffer): Promise<[number, number, number][]> {
  const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  expect(info.channels).toBe(3);
  const y = Math.round(info.height / 3);
  return EXPECTED.map((_, i) => {
    const x = Math.round(((i + 0.5) * info.width) / 7);
    const at = (y * info.width + x) * 3;
    return [data[at], data[at + 1], data[at + 2]];
  });
}

function expectBars(levels: [number, number, number][]): void {
  levels.forEach((rgb, i) => {
    rgb.forEach((v, c) => {
      if (Math.abs(v - EXPECTED[i][c]) > TOLERANCE) {
        throw new Error(`bar ${i} channel ${'RGB'[c]}: ${v}, expected ${EXPECTED[i][c]} +- ${TOLERANCE} (all: ${JSON.stringify(levels)})`);
      }
    });
  });
}

describe('JPEG colour levels', () => {
  it('limited-range frames (the range fixed from the planes by the colorspace filter) decode to the bars', async () => {
    const img = await firstJpeg({ url: BARS });
    expect([img.width, img.height]).toEqual([640, 360]);
    expectBars(await barLevels(img.jpeg));
  });

  it('full-range frames (sent to the encoder as they are) decode to the same bars', async () => {
    const img = await firstJpeg({ url: `${BARS},scale=out_range=full,format=yuv420p` });
    expectBars(await barLevels(img.jpeg));
  });

  it('downscaled frames (--jpeg-width: one swscale pass) decode to the same bars', async () => {
    const img = await firstJpeg({ url: BARS, maxWidth: 320 });
    expect([img.width, img.height]).toEqual([320, 180]);
    expectBars(await barLevels(img.jpeg));
  });

  it('4:4:4 frames (converted by swscale) decode to the same bars', async () => {
    const img = await firstJpeg({ url: `${BARS},format=yuv444p` });
    expectBars(await barLevels(img.jpeg));
  });

  it('jpegTables optimal: the same pixels as the standard tables, in a smaller file', async () => {
    const standard = await firstJpeg({ url: BARS });
    const optimal = await firstJpeg({ url: BARS, jpegTables: 'optimal' });
    expect(optimal.jpeg.length).toBeLessThan(standard.jpeg.length);
    const [a, b] = await Promise.all([standard.jpeg, optimal.jpeg].map((j) => sharp(j).raw().toBuffer()));
    expect(a.equals(b), 'Huffman coding is lossless: the decoded pictures are identical').toBe(true);
  });

  it('the check fails on a washed-out picture: the bars left in limited range', async () => {
    // What a JPEG of limited-range planes written without conversion looks like.
    const washed = await sharp(
      Buffer.from(EXPECTED.flatMap((rgb) => Array.from({ length: 91 }, () => rgb.map((v) => Math.round(16 + (v * 219) / 255)))).flat()),
      { raw: { width: 91 * 7, height: 1, channels: 3 } },
    )
      .resize(640, 360, { kernel: 'nearest', fit: 'fill' })
      .jpeg({ quality: 95 })
      .toBuffer();
    await expect(barLevels(washed).then(expectBars)).rejects.toThrow(/expected/);
  });
});
