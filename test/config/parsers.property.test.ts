import fc from 'fast-check';
import { ulid } from 'ulid';
import { describe, expect, it } from 'vitest';
import { parseCameraSpec } from '../../src/capture/camera-spec.js';
import { parseDuration, parseValue } from '../../src/config/parse-value.js';
import { redactUrl } from '../../src/config/redact.js';
import { redactSecrets, redactValue } from '../../src/config/redact-text.js';
import { CONFIG_KEYS } from '../../src/config/schema.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import { frameIdTime, MAX_TIME_MS, parseFrameId } from '../../src/domain/frame-id.js';
import { fuzzRuns } from '../helpers/fuzz.js';

/** Only InvalidInputError may escape a parser: anything else would be a crash with exit 1 instead of exit 2. */
function onlyInvalidInput(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
  }
}

const anyInput = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom('', ' ', '\n', '-1', '1e309', 'NaN', 'Infinity', '0x10', '1,5', '\u0000'),
);

describe('parsers: property-based', () => {
  it('durations: every "<n><unit>" parses to n x unit ms; anything else is InvalidInputError', () => {
    const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000 }), fc.constantFrom(...(Object.keys(units) as (keyof typeof units)[])), (n, unit) => {
        expect(parseDuration(`${n}${unit}`)).toBe(n * units[unit]);
      }),
    );
    fc.assert(fc.property(anyInput, (raw) => onlyInvalidInput(() => parseDuration(raw))));
  });

  it('every config key: any raw value either parses to the key type or is rejected naming the key', () => {
    for (const [key, spec] of Object.entries(CONFIG_KEYS)) {
      fc.assert(
        fc.property(fc.oneof(anyInput, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string())), (raw) => {
          try {
            const v = parseValue(`--${key}`, spec, raw);
            if (spec.type === 'int') expect(Number.isInteger(v)).toBe(true);
            if (spec.type === 'int' || spec.type === 'number' || spec.type === 'duration') {
              expect(typeof v).toBe('number');
              if ('min' in spec && spec.min !== undefined) expect(v as number).toBeGreaterThanOrEqual(spec.min);
              if ('max' in spec && spec.max !== undefined) expect(v as number).toBeLessThanOrEqual(spec.max);
            }
          } catch (err) {
            expect(err).toBeInstanceOf(InvalidInputError);
            expect((err as Error).message.startsWith(`--${key}: `)).toBe(true);
          }
        }),
        { numRuns: fuzzRuns(60) },
      );
    }
  });

  it('frame ids: ULIDs of any time up to the year 9999 round-trip (case-insensitive), their time is the capture time; other strings are InvalidInputError', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_TIME_MS }), (ms) => {
        const id = ulid(ms); // (newFrameId is monotonic: it never goes back in time)
        expect(parseFrameId(id.toLowerCase())).toBe(id);
        expect(frameIdTime(id)).toBe(ms);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: MAX_TIME_MS + 1, max: 2 ** 48 - 1 }), (ms) => {
        expect(() => parseFrameId(ulid(ms))).toThrow(/after the year 9999/);
      }),
    );
    fc.assert(fc.property(anyInput, (raw) => onlyInvalidInput(() => parseFrameId(raw))));
    // 26 characters but over 128 bits: not a ULID.
    expect(() => parseFrameId('8ZZZZZZZZZZZZZZZZZZZZZZZZZ')).toThrow(InvalidInputError);
  });

  it('camera specs: any text is a camera or an InvalidInputError, never another error', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          anyInput,
          fc
            .tuple(fc.string(), fc.constantFrom('=rtsp://', '=file://', '=lavfi:', '=testsrc', '=http://'), fc.string())
            .map((p) => p.join('')),
        ),
        (raw) => {
          onlyInvalidInput(() => parseCameraSpec(raw));
        },
      ),
      { numRuns: fuzzRuns(500) },
    );
  });

  it('redaction: a password in any URL, with any characters, never survives redactUrl / redactValue / redactSecrets', () => {
    // Unencoded '/', '?' or '#' would end the authority (for FFmpeg too): such passwords must be %-encoded.
    const password = fc.string({ minLength: 8, maxLength: 40 }).filter((p) => /[A-Za-z0-9]{8}/.test(p) && !/[\s"'<>/?#]/.test(p));
    fc.assert(
      fc.property(
        fc.constantFrom('rtsp', 'redis', 'postgres', 'rediss', 'http'),
        fc.stringMatching(/^[a-z]{1,8}$/),
        password,
        (scheme, user, pass) => {
          const url = `${scheme}://${user}:${pass}@camera.local:554/stream?x=1`;
          for (const out of [redactUrl(url), redactValue(`cam=${url}`), redactSecrets(`failed to open ${url}: refused`)]) {
            expect(out).not.toContain(pass);
            expect(out).toContain(`${user}:***@`);
          }
          const encoded = `${scheme}://${user}:${encodeURIComponent(pass)}@host/x`;
          expect(redactSecrets(`error at ${encoded}`)).not.toContain(encodeURIComponent(pass));
        },
      ),
      { numRuns: fuzzRuns(300) },
    );
  });
});
