import fc from 'fast-check';
import { encodeTime } from 'ulid';
import { describe, expect, it } from 'vitest';
import { decodeBusEvent, decodeEvent, encodeCameraEvent, encodeEvent } from '../../src/bus/event-codec.js';
import { decodeFrame, decodeReadyFrame, encodeFrame } from '../../src/bus/frame-codec.js';
import { InvalidInputError, MalformedMessageError } from '../../src/domain/errors.js';
import { EVENT_TYPES, makeEvent } from '../../src/domain/events.js';
import { frameIdTime, isFrameId, MAX_TIME_MS, newEventId, newFrameId, parseFrameId, ULID_RE } from '../../src/domain/frame-id.js';
import { decodeStoredEvent } from '../../src/store/store-service.js';
import type { FrameMessage } from '../../src/domain/frame.js';

const name = fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/);
const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)).filter((s) => !/^0+$/.test(s));

const frameArb = fc
  .record({
    time: fc.integer({ min: 0, max: 2 ** 47 }),
    cameraId: name,
    width: fc.integer({ min: 1, max: 16384 }),
    height: fc.integer({ min: 1, max: 16384 }),
    sizeBytes: fc.integer({ min: 0, max: 1 << 28 }),
    priority: fc.integer({ min: 0, max: 9 }),
    capabilities: fc.uniqueArray(name, { maxLength: 4 }),
    trace: fc.option(fc.tuple(hex(32), hex(16)), { nil: undefined }),
  })
  .map(({ time, trace, ...r }): FrameMessage => {
    const frameId = newFrameId(time);
    return {
      frameId,
      capturedAt: frameIdTime(frameId),
      format: 'jpeg',
      payloadKey: `detektr:frame:${frameId}`,
      traceparent: trace ? `00-${trace[0]}-${trace[1]}-01` : undefined,
      ...r,
    };
  });

function fieldsOf(f: FrameMessage): Record<string, string> {
  const list = encodeFrame(f);
  return Object.fromEntries(Array.from({ length: list.length / 2 }, (_, i) => [list[2 * i], list[2 * i + 1]]));
}
const toList = (o: Record<string, string>) => Object.entries(o).flat();

describe('frame message codec', () => {
  it('round-trips any valid frame', () => {
    fc.assert(
      fc.property(frameArb, (f) => {
        expect(decodeFrame(encodeFrame(f))).toEqual(f);
      }),
    );
  });

  it('rejects each malformed field with an error naming it', () => {
    const good = fieldsOf(fc.sample(frameArb, 1)[0]);
    const cases: [string, string | undefined][] = [
      ['frame_id', 'nope'],
      ['frame_id', undefined],
      ['camera_id', 'has space'],
      ['width', '-3'],
      ['width', '1.5'],
      ['height', 'abc'],
      ['priority', '10'],
      ['size_bytes', '1e3'],
      ['traceparent', '00-zz-11-01'],
      ['traceparent', `00-${'0'.repeat(32)}-${'1'.repeat(16)}-01`],
      ['captured_at', '1'],
      ['v', '2'],
      ['v', undefined],
      ['capabilities', 'a,,b'],
      ['frame_id', 'ZZZZZZZZZZZZZZZZZZZZZZZZZZ'],
      ['frame_id', '7ZZZZZZZZZ0000000000000000'],
    ];
    for (const [field, value] of cases) {
      const f = { ...good };
      if (value === undefined) delete f[field];
      else f[field] = value;
      let err: unknown;
      try {
        decodeFrame(toList(f));
      } catch (e) {
        err = e;
      }
      expect(err, `${field}=${value}`).toBeInstanceOf(MalformedMessageError);
      expect((err as MalformedMessageError).field, `${field}=${value}`).toBe(field);
    }
  });

  it('never throws anything but MalformedMessageError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 80 }), { maxLength: 40 }), (list) => {
        try {
          decodeFrame(list);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedMessageError);
        }
      }),
    );
  });
});

describe('what every decoder rejects (consumer-fuzz found these)', () => {
  const good = () => fieldsOf(fc.sample(frameArb, 1)[0]);
  const fieldOf = (fn: () => unknown): string | undefined => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(MalformedMessageError);
      return (e as MalformedMessageError).field ?? (e as Error).message;
    }
    return undefined;
  };

  it('duplicated names, too many fields, over-long names and values (read or not)', () => {
    expect(fieldOf(() => decodeFrame([...toList(good()), 'width', '7']))).toBe('width');
    expect(fieldOf(() => decodeFrame([...toList(good()), ...Array.from({ length: 100 }, (_, i) => [`x${i}`, '1']).flat()]))).toMatch(
      /entry has 11\d fields/,
    );
    expect(fieldOf(() => decodeFrame([...toList(good()), 'n'.repeat(65), '1']))).toBe('n'.repeat(32));
    expect(fieldOf(() => decodeFrame([...toList(good()), 'junk', 'j'.repeat(65_537)]))).toBe('junk');
  });

  it('ULIDs beyond 48 bits of time (a ULIDError before) and frame times after the year 9999', () => {
    const ev = encodeEvent(makeEvent({ type: 'frame.captured', frameId: newFrameId(), cameraId: 'c1', source: 'capture' }));
    const set = (k: string, v: string) => ev.map((x, i) => (ev[i - 1] === k ? v : x));
    expect(fieldOf(() => decodeEvent(set('frame_id', '8ZZZZZZZZZZZZZZZZZZZZZZZZZ')))).toBe('frame_id');
    expect(fieldOf(() => decodeEvent(set('frame_id', '7ZZZZZZZZZ0000000000000000')))).toBe('frame_id');
    expect(fieldOf(() => decodeEvent(set('event_id', 'ZZZZZZZZZZZZZZZZZZZZZZZZZZ')))).toBe('event_id');
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9A-HJKMNP-TV-Z]{26}$/), (id) => {
        fieldOf(() => decodeFrame(toList({ ...good(), frame_id: id })));
        fieldOf(() => decodeBusEvent(set('frame_id', id)));
      }),
    );
  });

  it('JSON nested deeper than 32 levels (JSON.stringify and jsonb overflow their stacks at a few thousand)', () => {
    const ev = encodeEvent(makeEvent({ type: 'frame.captured', frameId: newFrameId(), cameraId: 'c1', source: 'capture', data: { a: 1 } }));
    const withData = (d: string) => ev.map((x, i) => (ev[i - 1] === 'data' ? d : x));
    const deep = (n: number) => `{"a":${'['.repeat(n - 1)}${']'.repeat(n - 1)}}`;
    expect(decodeEvent(withData(deep(32))).data).toBeDefined();
    expect(decodeEvent(withData('{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[["}')).data).toBeDefined();
    expect(fieldOf(() => decodeEvent(withData(deep(33))))).toBe('data');
    expect(fieldOf(() => decodeEvent(withData(deep(30_000))))).toBe('data');
  });

  it('capabilities are a set; a ready stream entry names its processor and capability', () => {
    expect(decodeFrame(toList({ ...good(), capabilities: 'a,b,a' })).capabilities).toEqual(['a', 'b']);
    const g = good();
    expect(fieldOf(() => decodeReadyFrame(toList(g)))).toBe('processor_id');
    expect(fieldOf(() => decodeReadyFrame(toList({ ...g, processor_id: 'p' })))).toBe('capability');
    expect(decodeReadyFrame(toList({ ...g, processor_id: 'p', capability: 'c' })).capability).toBe('c');
  });
});

describe('one time rule for every id field of every message (issue #11)', () => {
  const idAt = (t: number) => encodeTime(t, 10) + '0'.repeat(16);
  const LAST = idAt(MAX_TIME_MS);
  const TOO_LATE = [idAt(MAX_TIME_MS + 1), '7ZZZZZZZZZ0000000000000000', idAt(2 ** 48 - 1)];
  const set = (list: string[], k: string, v: string) => list.map((x, i) => (i % 2 === 1 && list[i - 1] === k ? v : x));
  const frame = encodeFrame(fc.sample(frameArb, 1)[0]);
  const event = encodeEvent(makeEvent({ type: 'frame.captured', frameId: newFrameId(), cameraId: 'c1', source: 'capture' }));
  const camera = encodeCameraEvent({ eventId: newEventId(), type: 'camera.online', cameraId: 'c1', at: Date.now(), source: 'capture' });
  const decoders: [string, string[], string, (fields: string[]) => unknown][] = [
    ['frame message', frame, 'frame_id', decodeFrame],
    ['lifecycle event', event, 'frame_id', decodeBusEvent],
    ['lifecycle event', event, 'event_id', decodeBusEvent],
    ['camera event', camera, 'event_id', decodeBusEvent],
    ['stored lifecycle event', event, 'frame_id', decodeStoredEvent],
    ['stored lifecycle event', event, 'event_id', decodeStoredEvent],
    ['stored camera event', camera, 'event_id', decodeStoredEvent],
  ];

  /** `base` with `field` set to `id` (and a frame's captured_at to the id's time, as it must match). */
  const withId = (base: string[], field: string, id: string) => {
    const f = set(base, field, id);
    return base === frame && ULID_RE.test(id) ? set(f, 'captured_at', String(Math.min(frameIdTime(id), MAX_TIME_MS))) : f;
  };
  const failure = (fn: () => unknown): unknown => {
    try {
      fn();
    } catch (e) {
      return e;
    }
    return undefined;
  };

  it.each(decoders)('%s: %s takes times up to the year 9999 and rejects later ones naming the field', (_, base, field, decode) => {
    expect(() => decode(withId(base, field, LAST))).not.toThrow();
    for (const id of TOO_LATE) {
      const err = failure(() => decode(withId(base, field, id)));
      expect(err, `${field}=${id}`).toBeInstanceOf(MalformedMessageError);
      expect((err as MalformedMessageError).field, `${field}=${id}`).toBe(field);
    }
  });

  const crockford = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789ABCDEFGHJKMNPQRSTVWXYZ'), minLength: n, maxLength: n });
  const anyId = fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 2 ** 48 - 1 }), crockford(16)).map(([t, r]) => encodeTime(t, 10) + r),
    fc.tuple(fc.integer({ min: MAX_TIME_MS - 1000, max: MAX_TIME_MS + 1000 }), crockford(16)).map(([t, r]) => encodeTime(t, 10) + r),
    crockford(26),
    fc.string({ maxLength: 30 }),
  );

  it.each(decoders)('%s: %s is taken exactly when isFrameId says it is an id, else rejected naming the field', (_, base, field, decode) => {
    fc.assert(
      fc.property(anyId, (id) => {
        const err = failure(() => decode(withId(base, field, id)));
        if (isFrameId(id)) expect(err, id).toBeUndefined();
        else {
          expect(err, id).toBeInstanceOf(MalformedMessageError);
          expect((err as MalformedMessageError).field, id).toBe(field);
        }
      }),
    );
  });

  it('the counterexample of issue #11: a camera event with event_id 7ZZZZZZZZZ0000000000000000 is not stored', () => {
    expect(() => decodeStoredEvent(set(camera, 'event_id', '7ZZZZZZZZZ0000000000000000'))).toThrow(
      /field event_id carries a time after the year 9999/,
    );
  });

  it('frame ids given on the command line follow the same rule', () => {
    expect(parseFrameId(LAST.toLowerCase())).toBe(LAST);
    for (const id of TOO_LATE) expect(() => parseFrameId(id)).toThrow(InvalidInputError);
    expect(() => parseFrameId(TOO_LATE[0])).toThrow(/after the year 9999/);
  });
});

describe('lifecycle event codec', () => {
  it('round-trips any valid event', () => {
    const eventArb = fc.record({
      type: fc.constantFrom(...EVENT_TYPES),
      cameraId: name,
      source: name,
      processorId: fc.option(name, { nil: undefined }),
      attempt: fc.option(fc.integer({ min: 1, max: 100 }), { nil: undefined }),
      durationMs: fc.option(
        fc.integer({ min: 0, max: 1_000_000 }).map((n) => n / 1000),
        { nil: undefined },
      ),
      error: fc.option(fc.string({ minLength: 1, maxLength: 200 }), { nil: undefined }),
      trace: fc.option(fc.tuple(hex(32), hex(16), fc.boolean()), { nil: undefined }),
      data: fc.option(fc.dictionary(name, fc.oneof(fc.integer(), fc.string())), { nil: undefined }),
    });
    fc.assert(
      fc.property(eventArb, ({ trace, ...e }) => {
        const ev = makeEvent({ ...e, frameId: newFrameId(), ...(trace ? { traceId: trace[0], spanId: trace[1], sampled: trace[2] } : {}) });
        const back = decodeEvent(encodeEvent(ev));
        expect(JSON.parse(JSON.stringify(back))).toEqual(JSON.parse(JSON.stringify(ev)));
      }),
    );
  });

  it('rejects unknown types and bad data, naming the field', () => {
    const ev = makeEvent({ type: 'frame.captured', frameId: newFrameId(), cameraId: 'c1', source: 'capture' });
    const list = encodeEvent(ev);
    const set = (k: string, v: string) => {
      const copy = [...list];
      const i = copy.indexOf(k);
      if (i >= 0) copy[i + 1] = v;
      else copy.push(k, v);
      return copy;
    };
    expect(() => decodeEvent(set('type', 'frame.teleported'))).toThrow(/unknown event type/);
    expect(() => decodeEvent(set('data', '[1,2]'))).toThrow(/data must be a JSON object/);
    expect(() => decodeEvent(set('data', '{oops'))).toThrow(/data is not JSON/);
    expect(() => decodeEvent(set('duration_ms', '-1'))).toThrow(/duration_ms/);
    expect(() => decodeEvent(set('at', 'yesterday'))).toThrow(/field at/);
  });
});
