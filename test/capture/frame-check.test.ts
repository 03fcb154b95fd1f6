import { describe, expect, it } from 'vitest';
import { DEFAULT_VALIDATION, FrameChecker, parsePolicy, type GrayImage, type ValidationOptions } from '../../src/capture/frame-check.js';
import { InvalidInputError } from '../../src/domain/errors.js';

const W = 64;
const H = 36;

function image(fill: (x: number, y: number) => number, stride = W): GrayImage {
  const data = new Uint8Array(stride * H).fill(7); // padding bytes must not count
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[y * stride + x] = fill(x, y);
  return { data, width: W, height: H, stride };
}

/** Deterministic pseudo-noise, so "moving" pictures differ frame to frame. */
function noise(seed: number) {
  let s = seed * 2654435761;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s & 0xff;
  };
}

const opts = (o: Partial<ValidationOptions> = {}): ValidationOptions => ({ ...DEFAULT_VALIDATION, frozenAfterMs: 1000, ...o });

describe('FrameChecker', () => {
  it('flags a black picture, even with a bright clock burnt in', () => {
    const c = new FrameChecker(opts());
    const black = c.check(
      image(() => 0),
      0,
      false,
    );
    expect(black.flags).toEqual(['black']);
    expect(black.luma).toBe(0);
    // 1% of the pixels bright (an overlay): still black.
    const withClock = c.check(
      image((x, y) => (y === 0 && x < 23 ? 255 : 10)),
      100,
      false,
    );
    expect(withClock.flags).toContain('black');
  });

  it('does not flag a dark but real picture, nor a normal one', () => {
    const c = new FrameChecker(opts());
    const r = noise(1);
    expect(
      c.check(
        image(() => 20 + (r() % 60)),
        0,
        false,
      ).flags,
    ).toEqual([]);
    expect(
      c.check(
        image((x) => x * 4),
        100,
        false,
      ).flags,
    ).toEqual([]);
  });

  it('flags frozen only after the picture stayed the same for frozenAfterMs, and stops when it moves', () => {
    const c = new FrameChecker(opts({ frozenAfterMs: 1000 }));
    const still = image((x, y) => (x * 3 + y * 5) & 0xff);
    const verdicts = [0, 200, 400, 600, 800, 1000, 1200].map((t) => c.check(still, t, false));
    expect(verdicts.map((v) => v.frozenForMs)).toEqual([0, 200, 400, 600, 800, 1000, 1200]);
    expect(verdicts.map((v) => v.flags.includes('frozen'))).toEqual([false, false, false, false, false, true, true]);
    const moved = c.check(
      image((x, y) => (x * 3 + y * 5 + 40) & 0xff),
      1400,
      false,
    );
    expect(moved.frozenForMs).toBe(0);
    expect(moved.flags).toEqual([]);
  });

  it('treats near-identical pictures (encoder noise) as the same, and real change as change', () => {
    const c = new FrameChecker(opts({ frozenAfterMs: 500, frozenDiff: 0.5 }));
    const base = (x: number, y: number) => (x * 3 + y * 5) & 0xff;
    const r = noise(2);
    // Every 8th pixel off by 1-2 levels: mean abs difference ~0.2.
    let last;
    for (let t = 0; t <= 1000; t += 100)
      last = c.check(
        image((x, y) => Math.min(255, base(x, y) + (r() % 8 === 0 ? 1 + (r() % 2) : 0))),
        t,
        false,
      );
    expect(last!.diff).toBeLessThan(0.5);
    expect(last!.flags).toContain('frozen');
    const c2 = new FrameChecker(opts({ frozenAfterMs: 500 }));
    const r2 = noise(3);
    for (let t = 0; t <= 1000; t += 100)
      last = c2.check(
        image(() => r2()),
        t,
        false,
      );
    expect(last!.flags).not.toContain('frozen');
  });

  it('flags corrupt frames the decoder reported, and applies the policy (corrupt first)', () => {
    const c = new FrameChecker(opts({ policy: { corrupt: 'drop', black: 'drop', frozen: 'flag' } }));
    const v = c.check(
      image(() => 0),
      0,
      true,
    );
    expect(v.flags).toEqual(['corrupt', 'black']);
    expect(v.drop).toBe('corrupt');
    const v2 = c.check(
      image(() => 0),
      100,
      false,
    );
    expect(v2.drop).toBe('black');
  });

  it('skips checks whose policy is off and keeps flagged frames when the policy is flag', () => {
    const c = new FrameChecker(opts({ policy: { corrupt: 'off', black: 'flag', frozen: 'off' } }));
    let v;
    for (let t = 0; t <= 2000; t += 500)
      v = c.check(
        image(() => 0),
        t,
        true,
      );
    expect(v!.flags).toEqual(['black']);
    expect(v!.drop).toBeUndefined();
  });

  it('starts over after reset()', () => {
    const c = new FrameChecker(opts({ frozenAfterMs: 100 }));
    const still = image(() => 128);
    c.check(still, 0, false);
    expect(c.check(still, 200, false).flags).toContain('frozen');
    c.reset();
    expect(c.check(still, 300, false).frozenForMs).toBe(0);
  });
});

describe('parsePolicy', () => {
  it('reads one policy for all checks or per check', () => {
    expect(parsePolicy('drop')).toEqual({ corrupt: 'drop', black: 'drop', frozen: 'drop' });
    expect(parsePolicy(' off ')).toEqual({ corrupt: 'off', black: 'off', frozen: 'off' });
    expect(parsePolicy('black=drop')).toEqual({ corrupt: 'drop', black: 'drop', frozen: 'flag' });
    expect(parsePolicy('corrupt=flag, frozen=off')).toEqual({ corrupt: 'flag', black: 'flag', frozen: 'off' });
  });

  it.each(['', 'maybe', 'black', 'black=maybe', 'blurry=drop', 'black=drop=x'])('rejects %j naming it', (text) => {
    expect(() => parsePolicy(text, '--invalid-frames')).toThrow(InvalidInputError);
    expect(() => parsePolicy(text, '--invalid-frames')).toThrow(`--invalid-frames "${text}"`);
  });
});
