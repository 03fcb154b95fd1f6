import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { frameIdTime, isFrameId, newFrameId, parseFrameId } from '../../src/domain/frame-id.js';
import { InvalidInputError } from '../../src/domain/errors.js';

const GENERATE = `
import { monotonicFactory } from 'ulid';
const next = monotonicFactory();
const out = [];
for (let i = 0; i < 100000; i++) out.push(next());
process.stdout.write(out.join('\\n'));
`;

describe('FrameId', () => {
  it('is unique and strictly increasing over 100k ids in one process', () => {
    const ids = Array.from({ length: 100_000 }, () => newFrameId());
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect(ids[i] > ids[i - 1]).toBe(true);
  });

  it('is unique across two processes generating 100k ids each in the same milliseconds', () => {
    const run = () =>
      execFileSync(process.execPath, ['--input-type=module', '-e', GENERATE], { cwd: process.cwd(), maxBuffer: 64 << 20 })
        .toString()
        .split('\n');
    const [a, b] = [run(), run()];
    expect(a).toHaveLength(100_000);
    expect(b).toHaveLength(100_000);
    expect(new Set([...a, ...b]).size).toBe(200_000);
    expect(a.every(isFrameId) && b.every(isFrameId)).toBe(true);
  });

  it('carries its capture time', () => {
    const t = Date.now() + 60_000; // ahead of every id made so far, so monotonicity does not bump it
    expect(frameIdTime(newFrameId(t))).toBe(t);
  });

  it('parses user input case-insensitively and rejects what is not a ULID, naming it', () => {
    const id = newFrameId();
    expect(parseFrameId(` ${id.toLowerCase()} `)).toBe(id);
    expect(() => parseFrameId('not-a-frame')).toThrow(InvalidInputError);
    expect(() => parseFrameId('not-a-frame')).toThrow(/"not-a-frame"/);
    expect(() => parseFrameId('01JD8X3Q5R7ZC1V2W3X4Y5Z6AU')).toThrow(/not a ULID/); // U is not Crockford
  });
});
