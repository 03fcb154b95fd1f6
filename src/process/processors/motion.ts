import { InvalidInputError } from '../../domain/errors.js';
import type { FrameInput, Processor, ProcessorOptions, ProcessorResult } from '../processor.js';
import { GrayDecoder, type GrayImage } from './gray-decoder.js';

/** A rectangle in fractions of the frame (0..1): resolution independent. */
export interface MaskRect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface MotionOptions {
  /** Fraction of (unmasked) pixels that must change for `motion: true` (default 0.005). */
  threshold: number;
  /** Per-pixel absolute gray difference (0..255) that counts as a change (default 25). */
  pixelThreshold: number;
  /** Analysis size (default 160x90): the JPEG is decoded and reduced to this, in gray. */
  width: number;
  height: number;
  /** Areas ignored (timestamps, trees, a busy road): changes there never count. */
  mask: MaskRect[];
  /** Grid cell size in analysis pixels for regions (default 8). */
  cell: number;
  /** Fraction of a cell's pixels that must change for the cell to be part of a region (default 0.1). */
  cellThreshold: number;
  /** Regions smaller than this fraction of the frame are ignored (default 0.001). */
  minRegion: number;
  /** A camera's previous frame older than this is not compared against (default 30 s). */
  maxGapMs: number;
}

export const MOTION_DEFAULTS: MotionOptions = {
  threshold: 0.005,
  pixelThreshold: 25,
  width: 160,
  height: 90,
  mask: [],
  cell: 8,
  cellThreshold: 0.1,
  minRegion: 0.001,
  maxGapMs: 30_000,
};

export interface MotionRegion {
  /** In pixels of the original frame. */
  x: number;
  y: number;
  width: number;
  height: number;
  /** Fraction of the region's pixels that changed. */
  changedRatio: number;
}

export interface MotionDiff {
  motion: boolean;
  /** Mean absolute difference over unmasked pixels, 0..1. */
  score: number;
  /** Fraction of unmasked pixels that changed by more than pixelThreshold. */
  changedRatio: number;
  regions: MotionRegion[];
}

export interface MotionResult extends MotionDiff, ProcessorResult {
  /** The frame compared against (the camera's previous one), absent on a camera's first frame. */
  comparedTo?: string;
  /** True when there was nothing to compare against (first frame, or after a gap). */
  baseline: boolean;
  decodeMs: number;
  analyzeMs: number;
}

function num(options: ProcessorOptions, key: string, min: number, max: number, fallback: number, int = false): number {
  const raw = options[key];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n))) {
    throw new InvalidInputError(`--opt ${key}="${raw}": must be ${int ? 'an integer' : 'a number'} between ${min} and ${max}`);
  }
  return n;
}

/** "x,y,w,h" rectangles in fractions of the frame, separated by ";" (e.g. "0,0,1,0.1;0.8,0.8,0.2,0.2"). */
export function parseMask(raw: string): MaskRect[] {
  return raw
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const v = s.split(',').map((x) => Number(x.trim()));
      if (v.length !== 4 || v.some((x) => !Number.isFinite(x) || x < 0 || x > 1) || v[2] === 0 || v[3] === 0) {
        throw new InvalidInputError(`--opt mask: "${s}" must be x,y,width,height as fractions of the frame between 0 and 1`);
      }
      return { x: v[0], y: v[1], width: v[2], height: v[3] };
    });
}

export function motionOptions(options: ProcessorOptions = {}): MotionOptions {
  const known = ['threshold', 'pixelThreshold', 'width', 'height', 'mask', 'cell', 'cellThreshold', 'minRegion', 'maxGap'];
  const unknown = Object.keys(options).filter((k) => !known.includes(k));
  if (unknown.length) throw new InvalidInputError(`motion: unknown --opt ${unknown.join(', ')} (known: ${known.join(', ')})`);
  const d = MOTION_DEFAULTS;
  return {
    threshold: num(options, 'threshold', 0, 1, d.threshold),
    pixelThreshold: num(options, 'pixelThreshold', 1, 255, d.pixelThreshold, true),
    width: num(options, 'width', 16, 1920, d.width, true),
    height: num(options, 'height', 16, 1080, d.height, true),
    mask: options.mask === undefined ? [] : parseMask(options.mask),
    cell: num(options, 'cell', 2, 64, d.cell, true),
    cellThreshold: num(options, 'cellThreshold', 0, 1, d.cellThreshold),
    minRegion: num(options, 'minRegion', 0, 1, d.minRegion),
    maxGapMs: num(options, 'maxGap', 0, 86_400_000, d.maxGapMs, true),
  };
}

/** 1 where a pixel counts, 0 where the mask hides it. */
export function maskPixels(o: Pick<MotionOptions, 'width' | 'height' | 'mask'>): Uint8Array {
  const m = new Uint8Array(o.width * o.height).fill(1);
  for (const r of o.mask) {
    const x0 = Math.floor(r.x * o.width);
    const y0 = Math.floor(r.y * o.height);
    const x1 = Math.min(o.width, Math.ceil((r.x + r.width) * o.width));
    const y1 = Math.min(o.height, Math.ceil((r.y + r.height) * o.height));
    for (let y = y0; y < y1; y++) m.fill(0, y * o.width + x0, y * o.width + x1);
  }
  return m;
}

/**
 * Frame differencing on two gray images of one size: score, changed-area ratio and the
 * bounding boxes of connected changed areas (on a coarse grid, 4-connected), in the
 * coordinates of a `sourceWidth` x `sourceHeight` frame.
 */
export function compareFrames(
  prev: Uint8Array,
  cur: Uint8Array,
  mask: Uint8Array,
  o: MotionOptions,
  sourceWidth: number,
  sourceHeight: number,
): MotionDiff {
  const { width: w, height: h, cell } = o;
  const gw = Math.ceil(w / cell);
  const gh = Math.ceil(h / cell);
  const cellChanged = new Uint32Array(gw * gh);
  const cellCounted = new Uint32Array(gw * gh);
  let counted = 0;
  let changed = 0;
  let diffSum = 0;
  for (let y = 0; y < h; y++) {
    const row = y * w;
    const grow = Math.floor(y / cell) * gw;
    for (let x = 0; x < w; x++) {
      const i = row + x;
      if (!mask[i]) continue;
      const d = Math.abs(cur[i] - prev[i]);
      const g = grow + Math.floor(x / cell);
      counted++;
      cellCounted[g]++;
      diffSum += d;
      if (d > o.pixelThreshold) {
        changed++;
        cellChanged[g]++;
      }
    }
  }
  const changedRatio = counted ? changed / counted : 0;
  const score = counted ? diffSum / counted / 255 : 0;
  // Regions: connected active cells.
  const active = new Uint8Array(gw * gh);
  for (let g = 0; g < gw * gh; g++) active[g] = cellCounted[g] > 0 && cellChanged[g] / cellCounted[g] >= o.cellThreshold ? 1 : 0;
  const seen = new Uint8Array(gw * gh);
  const regions: MotionRegion[] = [];
  const sx = sourceWidth / w;
  const sy = sourceHeight / h;
  for (let start = 0; start < gw * gh; start++) {
    if (!active[start] || seen[start]) continue;
    let minX = gw,
      minY = gh,
      maxX = -1,
      maxY = -1,
      rc = 0,
      rn = 0;
    const stack = [start];
    seen[start] = 1;
    while (stack.length) {
      const g = stack.pop()!;
      const gx = g % gw;
      const gy = (g - gx) / gw;
      minX = Math.min(minX, gx);
      maxX = Math.max(maxX, gx);
      minY = Math.min(minY, gy);
      maxY = Math.max(maxY, gy);
      rc += cellChanged[g];
      rn += cellCounted[g];
      for (const [nx, ny] of [
        [gx - 1, gy],
        [gx + 1, gy],
        [gx, gy - 1],
        [gx, gy + 1],
      ]) {
        if (nx < 0 || ny < 0 || nx >= gw || ny >= gh) continue;
        const n = ny * gw + nx;
        if (active[n] && !seen[n]) {
          seen[n] = 1;
          stack.push(n);
        }
      }
    }
    const px0 = minX * cell,
      py0 = minY * cell;
    const px1 = Math.min(w, (maxX + 1) * cell),
      py1 = Math.min(h, (maxY + 1) * cell);
    if (((px1 - px0) * (py1 - py0)) / (w * h) < o.minRegion) continue;
    regions.push({
      x: Math.round(px0 * sx),
      y: Math.round(py0 * sy),
      width: Math.round((px1 - px0) * sx),
      height: Math.round((py1 - py0) * sy),
      changedRatio: round(rn ? rc / rn : 0),
    });
  }
  regions.sort((a, b) => b.width * b.height - a.width * a.height);
  return {
    motion: changedRatio >= o.threshold && changed > 0,
    score: round(score),
    changedRatio: round(changedRatio),
    regions: regions.slice(0, 32),
  };
}

const round = (n: number) => Math.round(n * 1e5) / 1e5;

/** Area-average (box) resize of a gray image; nearest neighbour where it grows. */
export function resizeGray(
  src: Uint8Array,
  sw: number,
  sh: number,
  dw: number,
  dh: number,
): { width: number; height: number; pixels: Uint8Array } {
  const out = new Uint8Array(dw * dh);
  if (sw === dw && sh === dh) {
    out.set(src.subarray(0, dw * dh));
    return { width: dw, height: dh, pixels: out };
  }
  for (let y = 0; y < dh; y++) {
    const y0 = Math.floor((y * sh) / dh);
    const y1 = Math.max(y0 + 1, Math.floor(((y + 1) * sh) / dh));
    for (let x = 0; x < dw; x++) {
      const x0 = Math.floor((x * sw) / dw);
      const x1 = Math.max(x0 + 1, Math.floor(((x + 1) * sw) / dw));
      let sum = 0;
      for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) sum += src[yy * sw + xx];
      out[y * dw + x] = Math.round(sum / ((y1 - y0) * (x1 - x0)));
    }
  }
  return { width: dw, height: dh, pixels: out };
}

interface CameraState {
  frameId: string;
  capturedAt: number;
  pixels: Uint8Array;
  seenAt: number;
  /** Frames of one camera are analysed one at a time, in arrival order. */
  chain: Promise<unknown>;
}

/**
 * `motion`: frame-difference motion detection. Each frame's JPEG is decoded to a small
 * gray image (FFmpeg's mjpeg decoder at reduced resolution + swscale, well under 1 ms for
 * 720p here) and compared with the camera's previous frame. Per-camera state lives in the
 * process, so run it with the camera-affinity strategy when several motion processors
 * share the load. Frames of one camera are analysed in order even with --concurrency > 1.
 */
export function createMotionProcessor(options: ProcessorOptions = {}): Processor {
  let o = motionOptions(options);
  let mask = maskPixels(o);
  const cameras = new Map<string, CameraState>();
  // Decoders are not re-entrant: one per frame being analysed, reused through a pool.
  const decoders: GrayDecoder[] = [];
  const pool: GrayDecoder[] = [];
  const takeDecoder = (): GrayDecoder => {
    const d = pool.pop();
    if (d) return d;
    const created = new GrayDecoder(o.width, o.height);
    decoders.push(created);
    return created;
  };

  const analyse = (frame: FrameInput, dec: GrayDecoder): MotionResult => {
    const t0 = performance.now();
    let gray: GrayImage;
    if (frame.thumbnail) {
      // Capture's gray thumbnail: no JPEG to fetch or decode, only a resize to the analysis size.
      gray = {
        ...resizeGray(frame.thumbnail.data, frame.thumbnail.width, frame.thumbnail.height, o.width, o.height),
        sourceWidth: frame.width,
        sourceHeight: frame.height,
      };
    } else {
      if (!frame.image) throw new Error('motion needs the frame image (or a thumbnail), and none was loaded');
      gray = dec.decode(frame.image);
    }
    const t1 = performance.now();
    const cam = cameras.get(frame.cameraId)!;
    const prev = cam.pixels.length ? { frameId: cam.frameId, capturedAt: cam.capturedAt, pixels: cam.pixels } : undefined;
    const usable = prev !== undefined && Math.abs(frame.capturedAt - prev.capturedAt) <= o.maxGapMs;
    const base: MotionDiff = usable
      ? compareFrames(prev.pixels, gray.pixels, mask, o, gray.sourceWidth, gray.sourceHeight)
      : { motion: false, score: 0, changedRatio: 0, regions: [] };
    // Keep the newest frame as the reference (frames may arrive out of order after a redelivery).
    if (!prev || frame.capturedAt >= prev.capturedAt) {
      cam.pixels = gray.pixels;
      cam.frameId = frame.frameId;
      cam.capturedAt = frame.capturedAt;
    }
    return {
      ...base,
      comparedTo: usable ? prev.frameId : undefined,
      baseline: !usable,
      decodeMs: round(t1 - t0),
      analyzeMs: round(performance.now() - t1),
    };
  };

  return {
    name: 'motion',
    capabilities: ['motion'],
    needsImage: true,
    usesThumbnail: true,
    setup(ctx) {
      if (Object.keys(ctx.options).length) {
        o = motionOptions({ ...options, ...ctx.options });
        mask = maskPixels(o);
      }
      pool.push(takeDecoder()); // fails here, at start-up, if FFmpeg cannot decode JPEG
    },
    async process(frame) {
      const now = Date.now();
      let cam = cameras.get(frame.cameraId);
      if (!cam) {
        cam = { frameId: '', capturedAt: 0, pixels: new Uint8Array(0), seenAt: now, chain: Promise.resolve() };
        cameras.set(frame.cameraId, cam);
        // Forget cameras not seen for a while (bounded memory with many cameras coming and going).
        if (cameras.size > 64) for (const [id, c] of cameras) if (now - c.seenAt > 10 * 60_000) cameras.delete(id);
      }
      cam.seenAt = now;
      const run = cam.chain.then(async () => {
        const dec = takeDecoder();
        try {
          return analyse(frame, dec);
        } finally {
          pool.push(dec);
        }
      });
      cam.chain = run.catch(() => undefined);
      return run;
    },
    teardown() {
      for (const d of decoders) d.close();
      decoders.length = 0;
      pool.length = 0;
      cameras.clear();
    },
  };
}
