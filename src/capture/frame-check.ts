/**
 * Frame validation for capture: black, frozen and corrupt frames, judged on a small
 * grayscale copy of each sampled frame (FrameChecker.SIZE), so it costs microseconds.
 *
 * - black: at least `blackRatio` of the pixels darker than `blackLevel` (full-range gray).
 *   A ratio rather than a mean keeps a black picture with a burnt-in clock "black".
 * - frozen: the mean absolute difference to the previous sampled frame stays at or under
 *   `frozenDiff` gray levels for `frozenAfterMs` of wall time. A live encoder's noise on a
 *   still picture stays well under 0.5; a real scene's sensor noise, once averaged down to
 *   the check size, stays around or above 1.
 * - corrupt: the decoder says so (AV_FRAME_FLAG_CORRUPT or decode_error_flags), or a packet
 *   was rejected since the previous frame (lost slices on a lossy link).
 */
import { InvalidInputError } from '../domain/errors.js';

export const FRAME_FLAGS = ['corrupt', 'black', 'frozen'] as const;
export type FrameFlag = (typeof FRAME_FLAGS)[number];

/** What to do with a frame that has a flag: drop it (with a reason), keep it flagged, or not check. */
export type FlagPolicy = 'drop' | 'flag' | 'off';
export type ValidationPolicy = Record<FrameFlag, FlagPolicy>;

export const DEFAULT_POLICY: ValidationPolicy = { corrupt: 'drop', black: 'flag', frozen: 'flag' };

export interface ValidationOptions {
  policy: ValidationPolicy;
  /** Gray level (0-255, full range) under which a pixel counts as dark. Default 32. */
  blackLevel: number;
  /** Share of dark pixels that makes a frame black. Default 0.98. */
  blackRatio: number;
  /** Mean absolute difference (gray levels) at or under which two frames are "the same". Default 0.5. */
  frozenDiff: number;
  /** How long the picture must stay the same before frames are frozen. Default 10 s. */
  frozenAfterMs: number;
}

export const DEFAULT_VALIDATION: ValidationOptions = {
  policy: DEFAULT_POLICY,
  blackLevel: 32,
  blackRatio: 0.98,
  frozenDiff: 0.5,
  frozenAfterMs: 10_000,
};

/** A plane of 8-bit gray pixels, `stride` bytes per row. */
export interface GrayImage {
  data: Uint8Array;
  width: number;
  height: number;
  stride: number;
}

export interface FrameVerdict {
  flags: FrameFlag[];
  /** The flag whose policy is drop, most severe first (corrupt, black, frozen). */
  drop?: FrameFlag;
  /** How long the picture has not changed (0 when it just changed). */
  frozenForMs: number;
  /** Mean gray level 0-255. */
  luma: number;
  /** Mean absolute difference to the previous frame, when there was one of the same size. */
  diff?: number;
}

/**
 * Parses a policy: "drop", "flag", "off" (for every check) or a comma list of
 * check=policy ("corrupt=drop,black=flag,frozen=off"); unnamed checks keep `base`.
 */
export function parsePolicy(text: string, what = 'invalid frame policy', base: ValidationPolicy = DEFAULT_POLICY): ValidationPolicy {
  const policies = ['drop', 'flag', 'off'];
  const t = text.trim();
  if (policies.includes(t)) return { corrupt: t as FlagPolicy, black: t as FlagPolicy, frozen: t as FlagPolicy };
  const out = { ...base };
  for (const part of t.split(',')) {
    const [name, value, extra] = part.split('=').map((s) => s.trim());
    if (!FRAME_FLAGS.includes(name as FrameFlag) || !policies.includes(value) || extra !== undefined) {
      throw new InvalidInputError(`${what} "${text}": use drop, flag or off, or a list like corrupt=drop,black=flag,frozen=off`);
    }
    out[name as FrameFlag] = value as FlagPolicy;
  }
  return out;
}

/** Stateful checker for one camera's sampled frames, in order. */
export class FrameChecker {
  /** Width and height of the gray image the checks run on. */
  static readonly WIDTH = 64;
  static readonly HEIGHT = 36;

  private prev?: Uint8Array;
  private sameSince?: number;

  constructor(private readonly opts: ValidationOptions) {}

  /** The picture source restarted (new session): a frozen run does not carry over. */
  reset(): void {
    this.prev = undefined;
    this.sameSince = undefined;
  }

  check(img: GrayImage, atMs: number, decoderCorrupt: boolean): FrameVerdict {
    const { policy } = this.opts;
    const { width, height, stride, data } = img;
    const n = width * height;
    const flags: FrameFlag[] = [];

    const packed = new Uint8Array(n);
    let sum = 0;
    let dark = 0;
    const level = this.opts.blackLevel;
    for (let y = 0; y < height; y++) {
      const row = y * stride;
      const out = y * width;
      for (let x = 0; x < width; x++) {
        const v = data[row + x];
        packed[out + x] = v;
        sum += v;
        if (v < level) dark++;
      }
    }
    const luma = n ? sum / n : 0;

    let diff: number | undefined;
    const prev = this.prev;
    if (prev && prev.length === n) {
      let d = 0;
      for (let i = 0; i < n; i++) d += Math.abs(packed[i] - prev[i]);
      diff = d / n;
    }
    this.prev = packed;

    // A changed picture (or the first one) starts a possible frozen run.
    const same = diff !== undefined && diff <= this.opts.frozenDiff;
    if (!same || this.sameSince === undefined) this.sameSince = atMs;
    const frozenForMs = atMs - this.sameSince;

    if (policy.corrupt !== 'off' && decoderCorrupt) flags.push('corrupt');
    if (policy.black !== 'off' && n > 0 && dark / n >= this.opts.blackRatio) flags.push('black');
    if (policy.frozen !== 'off' && frozenForMs >= this.opts.frozenAfterMs) flags.push('frozen');
    const drop = flags.find((f) => policy[f] === 'drop');
    return { flags, drop, frozenForMs, luma, diff };
  }
}
