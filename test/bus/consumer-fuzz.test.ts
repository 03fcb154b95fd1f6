import fc from 'fast-check';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { encodeTime, ulid } from 'ulid';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BufferService } from '../../src/buffer/buffer-service.js';
import { decodeBusEvent, encodeCameraEvent, encodeEvent } from '../../src/bus/event-codec.js';
import type { FieldList } from '../../src/bus/fields.js';
import { MAX_TIME_MS } from '../../src/domain/frame-id.js';
import { encodeFrame } from '../../src/bus/frame-codec.js';
import { GROUPS } from '../../src/bus/keys.js';
import { CAMERA_EVENT_TYPES } from '../../src/domain/camera-events.js';
import { EVENT_TYPES, makeEvent } from '../../src/domain/events.js';
import { frameIdTime, newEventId, newFrameId } from '../../src/domain/frame-id.js';
import type { FrameMessage } from '../../src/domain/frame.js';
import type { Processor } from '../../src/process/processor.js';
import { ProcessorRuntime } from '../../src/process/processor-runtime.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';
import { StoreService } from '../../src/store/store-service.js';
import { createLogger, type Logger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import { initTracing } from '../../src/telemetry/tracing.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { fuzzRuns, fuzzTimeout } from '../helpers/fuzz.js';
import { testRedis, waitFor, type TestRedis } from '../helpers/redis.js';

/**
 * Every consumer of a stream, fed a fast-check mix of malformed entries interleaved with
 * valid (some of them hostile but well-formed) ones, in-process against the real Redis
 * (and PostgreSQL for the store). The readers of streams in src/ (every XREADGROUP and
 * every decoding XRANGE):
 *
 * 1. buffer intake: StreamConsumer on <p>frames:captured, group `buffer` (decodeFrame);
 * 2. buffer dispatch: XRANGE of the heads of <p>frames:waiting:<lane> (queues, no group;
 *    decodeLanes dead-letters with XDEL);
 * 3. buffer re-routing: XREADGROUP (group `processor`) on the ready stream of a processor
 *    that is gone (decodeReadyFrame);
 * 4. processor runtime: StreamConsumer on <p>frames:ready:<id>, group `processor`
 *    (decodeReadyFrame, XDEL on ack);
 * 5. store: StreamConsumer on <p>events, group `store` (decodeStoredEvent).
 *
 * For each: no crash (run() never settles, no failed read / round / batch in the log, no
 * unhandled rejection), every valid entry completes once, every malformed one is in the
 * dead-letter stream exactly once with a reason naming its bad field, the dead-letter and
 * malformed counters rise by exactly the number of malformed entries, nothing is left
 * pending.
 */

const tracing = initTracing('detektr-test');
const FAST = { blockMs: 100, claimIdleMs: 1000, maxDeliveries: 3, processorTtlMs: 1500, heartbeatMs: 200, streamMaxLen: 10_000 };
const RUNS = fuzzRuns(15);
const TIMEOUT = fuzzTimeout(60_000);

// ------------------------------------------------------------------ entries and mutations

type Value = string | Buffer;
type Pairs = [Value, Value][];

/** A mutation of a valid entry: `expect` says which reason it must be dead-lettered with; none: still valid. */
interface Mutation {
  label: string;
  expect?: RegExp;
  apply: (p: Pairs) => Pairs;
}

const pairsOf = (list: FieldList): Pairs => Array.from({ length: list.length / 2 }, (_, i) => [list[2 * i], list[2 * i + 1]]);
const named = (field: string) => new RegExp(`\\b${field}\\b`);
const str = (v: Value) => (typeof v === 'string' ? v : v.toString('utf8'));
const setField = (p: Pairs, f: string, v: Value): Pairs =>
  p.some(([k]) => k === f) ? p.map(([k, x]) => [k, k === f ? v : x]) : [...p, [f, v]];
const deep = (levels: number) => `{"a":${'['.repeat(levels - 1)}${']'.repeat(levels - 1)}}`;
const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)).filter((s) => !/^0+$/.test(s));
/** A ULID of time `t` (ulid(0) would take the time now). */
const ulidAt = (t: number) => encodeTime(t, 10) + ulid().slice(10);
/** Random bytes that are not UTF-8 (they start with 0xff): never a valid id, number or version. */
const garbage = fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.concat([Buffer.from([0xff]), Buffer.from(b)]));

const HOSTILE_TRACEPARENTS = [
  '00-zz-11-01',
  `00-${'0'.repeat(32)}-${'1'.repeat(16)}-01`,
  `00-${'1'.repeat(32)}-${'0'.repeat(16)}-01`,
  `00-${'A'.repeat(32)}-${'b'.repeat(16)}-01`,
  `ff-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
  `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01-00`,
  `00-${'a'.repeat(32)}-${'b'.repeat(16)}-1`,
  `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01\n`,
  ` 00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
  '<script>alert(1)</script>',
  't'.repeat(60_000),
  '\u0000',
  '00-'.repeat(1000),
  `00_${'a'.repeat(32)}_${'b'.repeat(16)}_01`,
];
const BAD_VERSIONS = ['2', '0', '', '01', '1.0', ' 1', 'v1', '1\n', '\u00ff', 'x'.repeat(100), '-1', '1e0'];
/** The first id past the rule (src/domain/frame-id.ts): a ULID of one ms after the year 9999. */
const AFTER_9999 = encodeTime(MAX_TIME_MS + 1, 10) + '0'.repeat(16);
/** Bad for every id field of every message (frame_id, event_id): one rule. */
const BAD_ULIDS = [
  AFTER_9999,
  'nope',
  'ZZZZZZZZZZZZZZZZZZZZZZZZZZ',
  '8ZZZZZZZZZZZZZZZZZZZZZZZZZ',
  '7ZZZZZZZZZ0000000000000000',
  '01arz3ndektsv4rrffq69g5fav',
  '01ARZ3NDEKTSV4RRFFQ69G5FA',
  '01ARZ3NDEKTSV4RRFFQ69G5FAVV',
  'IIIIIIIIIIIIIIIIIIIIIIIIII',
  '01ARZ3NDEKTSV4RRFF 69G5FAV',
];
const BAD_IDS = ['has space', 'x'.repeat(65), 'cam/1', 'kamera-\u00fc', 'a\nb', '../../etc/passwd', '*'];
const NOT_INTS = [
  'abc',
  '-1',
  'NaN',
  '1e309',
  '-1e309',
  '1.5',
  'Infinity',
  '0x10',
  ' 7',
  '7 ',
  '99999999999999999999',
  '1e3',
  '+5',
  '\u0663',
  '7\n',
  '',
];

const FRAME_REQUIRED = ['v', 'frame_id', 'camera_id', 'captured_at', 'width', 'height', 'format', 'size_bytes', 'priority', 'payload_key'];
const FRAME_BAD: Record<string, string[]> = {
  v: BAD_VERSIONS,
  frame_id: [...BAD_ULIDS, '01ARZ3NDEKTSV4RRFFQ69G5FAV' /* a ULID of another time than captured_at */],
  camera_id: BAD_IDS,
  captured_at: [...NOT_INTS, '1', String(MAX_TIME_MS + 1), '281474976710656'],
  width: [...NOT_INTS, '0', '16385'],
  height: [...NOT_INTS, '0', '-16'],
  size_bytes: [...NOT_INTS, '268435457'],
  priority: [...NOT_INTS, '10', '-1'],
  format: ['JPEG', 'x'.repeat(17), 'jp eg', 'jp\u00e9g'],
  payload_key: ['has space', 'k'.repeat(201), ' ', 'a\tb', ''],
  capabilities: ['a,,b', ',', 'a b', ',a', 'a,', Array(33).fill('c').join(','), 'x'.repeat(65), 'w\u00f6rk'],
  traceparent: HOSTILE_TRACEPARENTS,
  processor_id: ['bad id!', 'x'.repeat(65)],
  capability: ['bad id!', 'x'.repeat(65)],
};

const EVENT_REQUIRED = ['v', 'event_id', 'type', 'frame_id', 'camera_id', 'at', 'source'];
const CAMERA_REQUIRED = ['v', 'event_id', 'type', 'camera_id', 'at', 'source'];
const EVENT_BAD: Record<string, string[]> = {
  v: BAD_VERSIONS,
  event_id: BAD_ULIDS,
  type: ['frame.teleported', 'FRAME.CAPTURED', 'frame.captured ', 'camera.exploded', 'x'.repeat(1000), ''],
  frame_id: BAD_ULIDS,
  camera_id: BAD_IDS,
  source: BAD_IDS,
  at: [...NOT_INTS, '281474976710656'],
  processor_id: ['bad id!', 'x'.repeat(65)],
  capability: ['bad id!', 'x'.repeat(65)],
  attempt: ['0', '-1', 'abc', '1000001', '1.5', '1e309', 'NaN'],
  duration_ms: ['-1', 'NaN', '1e309', 'abc', 'Infinity', '-Infinity', '-0.001', '1,5'],
  traceparent: HOSTILE_TRACEPARENTS,
  data: ['{oops', '[1,2]', '"str"', 'null', '1', 'true', '{"a":1}x', deep(33), deep(5000), deep(30_000), '{"a":"\\ud800', '\u0000'],
};
const CAMERA_BAD: Record<string, string[]> = {
  v: BAD_VERSIONS,
  event_id: BAD_ULIDS,
  camera_id: BAD_IDS,
  source: BAD_IDS,
  at: EVENT_BAD.at,
  data: EVENT_BAD.data,
  type: ['camera.exploded', 'camera', 'CAMERA.ONLINE'],
};

function expectFor(field: string): RegExp {
  if (field === 'v') return /message version/;
  if (field === 'type') return /event type|field type/;
  if (field === 'frame_id') return /frame_id|captured_at/;
  return named(field);
}

/** Malformed variants of an entry whose fields are `all`, `required` of them required, with bad values `bad`. */
function malformed(all: string[], required: string[], bad: Record<string, string[]>): fc.Arbitrary<Mutation> {
  const badFields = Object.keys(bad);
  return fc.oneof(
    fc.constantFrom(...required).map((f): Mutation => ({
      label: `missing ${f}`,
      expect: f === 'v' ? /message version/ : new RegExp(`missing field ${f}\\b`),
      apply: (p) => p.filter(([k]) => k !== f),
    })),
    fc.constantFrom(...badFields).chain((f) =>
      fc.constantFrom(...bad[f]).map((v): Mutation => ({
        label: `${f}=${JSON.stringify(v.slice(0, 40))}`,
        expect: expectFor(f),
        apply: (p) => setField(p, f, v),
      })),
    ),
    fc
      .tuple(fc.constantFrom(...badFields.filter((f) => f !== 'payload_key')), garbage)
      .map(([f, g]): Mutation => ({ label: `${f}=<binary ${g.length}>`, expect: expectFor(f), apply: (p) => setField(p, f, g) })),
    fc.tuple(fc.constantFrom(...all), fc.boolean()).map(([f, same]): Mutation => ({
      label: `duplicated ${f}`,
      expect: new RegExp(`field ${f} appears more than once`),
      apply: (p) => [...p, [f, same ? str(p.find(([k]) => k === f)?.[1] ?? '') : 'other']],
    })),
    fc.integer({ min: 65, max: 400 }).map((n): Mutation => ({
      label: `${n} junk fields`,
      expect: /entry has \d+ fields \(at most 64\)/,
      apply: (p) => [...p, ...Array.from({ length: n }, (_, i): [string, string] => [`x${i}`, String(i)])],
    })),
    fc.tuple(fc.constantFrom(...all, 'junk'), fc.integer({ min: 65_537, max: 150_000 })).map(([f, n]): Mutation => ({
      label: `${f} of ${n} characters`,
      expect: new RegExp(`field ${f} is too long`),
      apply: (p) => setField(p, f, 'a'.repeat(n)),
    })),
    fc.integer({ min: 65, max: 5000 }).map((n): Mutation => ({
      label: `field name of ${n}`,
      expect: /field name .* is too long/,
      apply: (p) => [...p, ['n'.repeat(n), '1']],
    })),
    fc.constantFrom<Mutation>(
      { label: 'empty entry', expect: /message version \(missing\)/, apply: () => [['', '']] },
      { label: 'only v', expect: /missing field/, apply: () => [['v', '1']] },
      { label: 'all values empty', expect: /message version/, apply: (p) => p.map(([k]) => [k, '']) },
    ),
  );
}

/** Well-formed but hostile variants: must be consumed like any valid entry. */
function hostileFrame(ready: boolean): fc.Arbitrary<Mutation> {
  const time = (t: number): Mutation => ({
    label: `time ${t}`,
    apply: (p) => setField(setField(p, 'frame_id', ulidAt(t)), 'captured_at', String(t)),
  });
  return fc.oneof(
    fc.constant<Mutation>({ label: 'as is', apply: (p) => p }),
    fc.constantFrom(time(0), time(MAX_TIME_MS)),
    fc
      .uniqueArray(fc.tuple(fc.stringMatching(/^[a-z]{1,20}$/), fc.string({ maxLength: 2000 })), { maxLength: 30, selector: ([k]) => k })
      .map((extra): Mutation => ({
        label: `${extra.length} unknown fields`,
        apply: (p) => [...p, ...extra.map(([k, v]): [string, string] => [`zz_${k}`, v])],
      })),
    garbage.map((g): Mutation => ({ label: 'binary field name', apply: (p) => [...p, [g.subarray(0, 60), g]] })),
    fc
      .integer({ min: 1, max: 200 })
      .map((n): Mutation => ({ label: 'binary payload key', apply: (p) => setField(p, 'payload_key', Buffer.alloc(n, 0xff)) })),
    fc
      .string({ maxLength: 10_000 })
      .map((s): Mutation => ({ label: 'junk tracestate', apply: (p) => setField(p, 'tracestate', s || 'x') })),
    fc
      .tuple(hex(32), hex(16), hex(2))
      .map(([t, s, f]): Mutation => ({ label: 'traceparent flags', apply: (p) => setField(p, 'traceparent', `00-${t}-${s}-${f}`) })),
    fc.constantFrom<Mutation>(
      {
        label: 'extremes',
        apply: (p) =>
          [
            ['width', '16384'],
            ['height', '1'],
            ['size_bytes', '268435456'],
            ['priority', '0'],
          ].reduce<Pairs>((q, [k, v]) => setField(q, k, v), p),
      },
      { label: 'priority 9, no size', apply: (p) => setField(setField(p, 'priority', '9'), 'size_bytes', '0') },
      { label: 'reversed fields', apply: (p) => [...p].reverse() },
      ...(ready
        ? []
        : [
            { label: 'capability twice', apply: (p: Pairs) => setField(p, 'capabilities', 'work,work') },
            { label: 'capability nobody offers besides', apply: (p: Pairs) => setField(p, 'capabilities', 'work,nobody-has-it') },
            { label: 'no capabilities (all)', apply: (p: Pairs) => p.filter(([k]) => k !== 'capabilities') },
          ]),
    ),
  );
}

/** An event id of time `t`: the id rule's bounds hold for event ids as for frame ids. */
const eventIdAt = (t: number): Mutation => ({ label: `event id time ${t}`, apply: (p) => setField(p, 'event_id', ulidAt(t)) });

function hostileEvent(): fc.Arbitrary<Mutation> {
  const time = (t: number): Mutation => ({ label: `frame time ${t}`, apply: (p) => setField(p, 'frame_id', ulidAt(t)) });
  return fc.oneof(
    fc.constant<Mutation>({ label: 'as is', apply: (p) => p }),
    fc.constantFrom(time(0), time(MAX_TIME_MS), eventIdAt(0), eventIdAt(MAX_TIME_MS)),
    fc.constantFrom<Mutation>(
      { label: 'at 0', apply: (p) => setField(p, 'at', '0') },
      { label: 'at max', apply: (p) => setField(p, 'at', '281474976710655') },
      { label: 'NUL in data', apply: (p) => setField(p, 'data', '{"a\\u0000b":"x\\u0000y","n":[1,"\\u0000"]}') },
      {
        label: 'lone surrogates in data',
        apply: (p) => setField(p, 'data', '{"\\ud800":"\\udc00x","k":["\\ud83d",{"\\udfff":1}],"ok":"\\ud83d\\ude00"}'),
      },
      { label: 'data 32 deep', apply: (p) => setField(p, 'data', deep(32)) },
      {
        label: 'big numbers in data',
        apply: (p) => setField(p, 'data', '{"width":1e400,"height":-1,"sizeBytes":1e308,"priority":"9","format":7}'),
      },
      {
        label: 'text that needs quoting',
        apply: (p) => setField(setField(p, 'error', 'a "quoted" \\ back\\slash {x,y} NULL \u0000 \ud83d\ude00'), 'reason', ' , '),
      },
      { label: 'long reason', apply: (p) => setField(p, 'reason', 'r'.repeat(65_536)) },
      { label: 'attempt max, huge duration', apply: (p) => setField(setField(p, 'attempt', '1000000'), 'duration_ms', '1e308') },
      { label: 'reversed fields', apply: (p) => [...p].reverse() },
    ),
    fc
      .tuple(hex(32), hex(16), hex(2))
      .map(([t, s, f]): Mutation => ({ label: 'traceparent flags', apply: (p) => setField(p, 'traceparent', `00-${t}-${s}-${f}`) })),
    fc
      .uniqueArray(fc.tuple(fc.stringMatching(/^[a-z]{1,20}$/), fc.string({ maxLength: 2000 })), { maxLength: 30, selector: ([k]) => k })
      .map((extra): Mutation => ({
        label: `${extra.length} unknown fields`,
        apply: (p) => [...p, ...extra.map(([k, v]): [string, string] => [`zz_${k}`, v])],
      })),
    fc.string({ maxLength: 3000 }).map((s): Mutation => ({ label: 'any error text', apply: (p) => setField(p, 'error', s || 'e') })),
  );
}

/** The huge ones, a few per consumer: 1 and 5 MB values, 10 000 fields, a 2 MB field name. */
const BIG: Mutation[] = [
  { label: '1 MB camera_id', expect: /field camera_id is too long/, apply: (p) => setField(p, 'camera_id', 'c'.repeat(1 << 20)) },
  { label: '5 MB unknown field', expect: /field blob is too long/, apply: (p) => setField(p, 'blob', Buffer.alloc(5 << 20, 0x61)) },
  {
    label: '10 000 fields',
    expect: /entry has 100\d\d fields/,
    apply: (p) => [...p, ...Array.from({ length: 10_000 }, (_, i): [string, string] => [`f${i}`, 'x'])],
  },
  { label: '2 MB field name', expect: /field name .* is too long/, apply: (p) => [...p, ['k'.repeat(2 << 20), 'v']] },
];

/**
 * Counterexamples the fuzzing found, replayed on every run. Issue #11 (seed -242977261, path
 * "9"): a camera event whose event id carries the largest ULID time was stored.
 */
const FOUND_EVENTS: { m: Mutation; kind: 'frame' | 'camera'; t: number }[] = (['camera', 'frame'] as const).map((kind) => ({
  m: {
    label: `${kind} event_id="7ZZZZZZZZZ0000000000000000"`,
    expect: named('event_id'),
    apply: (p) => setField(p, 'event_id', '7ZZZZZZZZZ0000000000000000'),
  },
  kind,
  t: 0,
}));

// ------------------------------------------------------------------ valid bases

function frameFields(o: { ready?: string } = {}): Pairs {
  const frameId = newFrameId();
  const f: FrameMessage = {
    frameId,
    cameraId: 'cam1',
    capturedAt: frameIdTime(frameId),
    width: 640,
    height: 360,
    format: 'jpeg',
    sizeBytes: 1000,
    priority: 5,
    payloadKey: `nowhere:${frameId}`,
    capabilities: ['work'],
    traceparent: `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`,
    ...(o.ready ? { processorId: o.ready, capability: 'work' } : {}),
  };
  return pairsOf(encodeFrame(f));
}

function eventFields(kind: 'frame' | 'camera', type: number): Pairs {
  if (kind === 'camera') {
    return pairsOf(
      encodeCameraEvent({
        eventId: newEventId(),
        type: CAMERA_EVENT_TYPES[type % CAMERA_EVENT_TYPES.length],
        cameraId: 'cam1',
        at: Date.now(),
        source: 'capture',
        reason: 'why',
        data: { url: 'rtsp://x' },
      }),
    );
  }
  return pairsOf(
    encodeEvent(
      makeEvent({
        type: EVENT_TYPES[type % EVENT_TYPES.length],
        frameId: newFrameId(),
        cameraId: 'cam1',
        source: 'process',
        processorId: 'work',
        capability: 'work',
        attempt: 1,
        durationMs: 1.5,
        error: 'boom',
        reason: 'because',
        traceId: 'ab'.repeat(16),
        spanId: 'cd'.repeat(8),
        data: { width: 640, height: 360 },
      }),
    ),
  );
}

const frameCase = (ready: boolean) =>
  fc.oneof(
    {
      weight: 3,
      arbitrary: malformed(
        [...FRAME_REQUIRED, 'capabilities', 'traceparent', ...(ready ? ['processor_id', 'capability'] : [])],
        [...FRAME_REQUIRED, ...(ready ? ['processor_id', 'capability'] : [])],
        FRAME_BAD,
      ),
    },
    { weight: 2, arbitrary: hostileFrame(ready) },
  );

const FRAME_EVENT_FIELDS = [
  ...EVENT_REQUIRED,
  'processor_id',
  'capability',
  'attempt',
  'duration_ms',
  'error',
  'reason',
  'traceparent',
  'data',
];
const eventCase = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .tuple(malformed(FRAME_EVENT_FIELDS, EVENT_REQUIRED, EVENT_BAD), fc.nat())
      .map(([m, t]) => ({ m, kind: 'frame' as const, t })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(malformed([...CAMERA_REQUIRED, 'reason', 'data'], CAMERA_REQUIRED, CAMERA_BAD), fc.nat())
      .map(([m, t]) => ({ m, kind: 'camera' as const, t })),
  },
  { weight: 2, arbitrary: fc.tuple(hostileEvent(), fc.nat()).map(([m, t]) => ({ m, kind: 'frame' as const, t })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom<Mutation>({ label: 'camera event', apply: (p) => p }, eventIdAt(0), eventIdAt(MAX_TIME_MS)), fc.nat())
      .map(([m, t]) => ({ m, kind: 'camera' as const, t })),
  },
);

// ------------------------------------------------------------------ observing a consumer

interface Built {
  label: string;
  pairs: Pairs;
  expect?: RegExp;
  /** For a valid entry: what shows it was handled (frame id, or event id). */
  key?: string;
}

function build(m: Mutation, base: Pairs, keyField: string): Built {
  const pairs = m.apply(base);
  const key = m.expect ? undefined : str(pairs.find(([k]) => k === keyField)![1]);
  return { label: m.label, pairs, expect: m.expect, key };
}

interface DeadLetter {
  stream: string;
  entryId: string;
  reason: string;
}

/** The dead-letter stream, read incrementally (its entries hold up to 64 KiB of fields each). */
class DeadLetters {
  private last = '-';
  readonly all: DeadLetter[] = [];
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
  ) {}
  async read(): Promise<DeadLetter[]> {
    for (;;) {
      const rows = await this.redis.xrange(this.key, this.last === '-' ? '-' : `(${this.last}`, '+', 'COUNT', 200);
      for (const [id, f] of rows) {
        const m = new Map<string, string>();
        for (let i = 0; i < f.length; i += 2) m.set(f[i], f[i + 1]);
        this.all.push({ stream: m.get('stream') ?? '', entryId: m.get('entry_id') ?? '', reason: m.get('reason') ?? '' });
        this.last = id;
      }
      if (rows.length < 200) return this.all;
    }
  }
}

/** Per frame id, processing.completed events and frame.dropped events of the whole frame, read incrementally. */
class Outcomes {
  private last = '-';
  readonly count = new Map<string, { completed: number; dropped: number }>();
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
  ) {}
  async read(): Promise<Map<string, { completed: number; dropped: number }>> {
    for (;;) {
      const rows = await this.redis.xrange(this.key, this.last === '-' ? '-' : `(${this.last}`, '+', 'COUNT', 500);
      for (const [id, f] of rows) {
        this.last = id;
        const e = decodeBusEvent(f);
        if (e.type !== 'processing.completed' && !(e.type === 'frame.dropped' && !e.processorId)) continue;
        const c = this.count.get(e.frameId) ?? { completed: 0, dropped: 0 };
        if (e.type === 'processing.completed') c.completed++;
        else c.dropped++;
        this.count.set(e.frameId, c);
      }
      if (rows.length < 500) return this.count;
    }
  }
}

async function metricSum(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
}

/** Log lines that mean a consumer failed, looped or retried (rather than dead-lettering and going on). */
function failureLog() {
  const lines: string[] = [];
  const logger: Logger = createLogger({
    component: 'fuzz',
    level: 'warn',
    write: (line) => {
      const r = JSON.parse(line) as { level: string; msg: string };
      if (r.level === 'error' || /fail|retry/i.test(r.msg)) lines.push(line.slice(0, 2000));
    },
  });
  return { logger, lines };
}

function watch(p: Promise<unknown>): { state: string } {
  const s = { state: 'running' };
  p.then(
    () => (s.state = 'resolved'),
    (err: unknown) => (s.state = `rejected: ${String(err)}`),
  );
  return s;
}

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});

interface Subject {
  redis: Redis;
  metrics: Metrics;
  deadLetters: DeadLetters;
  /** The streams (labels of the counters) this consumer dead-letters from. */
  label: string;
  done: (keys: string[]) => Promise<Set<string>>;
  pending: () => Promise<number>;
  alive: () => string[];
  failures: string[];
}

interface Counts {
  dead: number;
  malformed: number;
}

async function counts(s: Subject): Promise<Counts> {
  return {
    dead: await metricSum(s.metrics, 'detektr_stream_dead_lettered_total', { stream: s.label, reason: 'malformed' }),
    malformed: await metricSum(s.metrics, 'detektr_stream_malformed_total', { stream: s.label }),
  };
}

/** XADDs the entries, in order, in one round trip; their ids. */
async function add(redis: Redis, stream: string, entries: Built[]): Promise<string[]> {
  const tx = redis.pipeline();
  for (const e of entries) tx.xadd(stream, '*', ...e.pairs.flat());
  const res = (await tx.exec()) ?? [];
  return res.map(([err, id], i) => {
    if (err) throw new Error(`XADD of ${entries[i].label} failed: ${err.message}`);
    return String(id);
  });
}

/** XADDs the entries to `stream` and checks that the consumer handled them (see check). */
async function feed(s: Subject, stream: string, entries: Built[], totalBad: { n: number }): Promise<void> {
  const before = await counts(s);
  await check(s, entries, await add(s.redis, stream, entries), totalBad, before);
}

/**
 * Waits until the valid entries are handled and the malformed ones dead-lettered, then
 * checks the contract: each malformed one dead-lettered once with its reason, the counters
 * up by exactly their number, nothing pending, no failure logged, the service running.
 */
async function check(s: Subject, entries: Built[], ids: string[], totalBad: { n: number }, before: Counts): Promise<void> {
  const bad = entries.map((e, i) => ({ e, id: ids[i] })).filter(({ e }) => e.expect);
  const good = entries.filter((e) => !e.expect).map((e) => e.key!);
  totalBad.n += bad.length;
  const lettered = async () => new Set((await s.deadLetters.read()).filter((d) => d.stream === s.label).map((d) => d.entryId));
  try {
    await waitFor(
      'every entry handled',
      async () => {
        const dl = await lettered();
        if (!bad.every((b) => dl.has(b.id))) return false;
        const done = await s.done(good);
        return good.every((k) => done.has(k));
      },
      20_000,
      50,
    );
  } catch (err) {
    const dl = await lettered();
    const done = await s.done(good);
    throw new Error(
      `${(err as Error).message}; not dead-lettered: ${bad
        .filter((b) => !dl.has(b.id))
        .map((b) => b.e.label)
        .join('; ')}` +
        `; valid ones not done: ${entries
          .filter((e) => !e.expect && !done.has(e.key!))
          .map((e) => e.label)
          .join('; ')}; failures: ${s.failures.slice(0, 3).join('\n')}`,
    );
  }
  const mine = (await s.deadLetters.read()).filter((d) => d.stream === s.label);
  for (const { e, id } of bad) {
    const letters = mine.filter((d) => d.entryId === id);
    expect(letters, e.label).toHaveLength(1);
    expect(letters[0].reason, e.label).toMatch(/^malformed: /);
    expect(letters[0].reason, e.label).toMatch(e.expect!);
  }
  // Nothing valid dead-lettered, nothing twice.
  expect(mine.length).toBe(totalBad.n);
  await waitFor(
    'the counters',
    async () => {
      const now = await counts(s);
      return now.dead - before.dead === bad.length && now.malformed - before.malformed === bad.length;
    },
    5000,
    20,
  ).catch(async () => expect(await counts(s)).toEqual({ dead: before.dead + bad.length, malformed: before.malformed + bad.length }));
  await waitFor('nothing pending', async () => (await s.pending()) === 0, 5000, 20).catch(async () => expect(await s.pending()).toBe(0));
  expect(s.failures).toEqual([]);
  expect(s.alive()).toEqual([]);
  expect(unhandled).toEqual([]);
}

// ------------------------------------------------------------------ the Redis-side consumers

const work: Processor = { name: 'work', capabilities: ['work'], process: () => ({ ok: true }) };

interface Pipeline extends Subject {
  t: TestRedis;
  outcomes: Outcomes;
  close(): Promise<void>;
}

async function pipeline(
  label: string,
  o: { buffer: boolean; stream: (t: TestRedis) => string; before?: (t: TestRedis) => Promise<void> },
): Promise<Pipeline> {
  const t = await testRedis(label);
  await o.before?.(t);
  const metrics = createMetrics('fuzz');
  const { logger, lines } = failureLog();
  const conns: Redis[] = [];
  const blocking = () => {
    const c = t.blocking.duplicate();
    conns.push(c);
    return c;
  };
  const runtime = new ProcessorRuntime({
    redis: t.redis,
    blocking: [blocking()],
    shards: t.shards,
    tracer: tracing.tracer,
    metrics,
    logger,
    processor: work,
    id: 'work',
    concurrency: 4,
    frameTimeoutMs: 5000,
    ...FAST,
  });
  const watched = [watch(runtime.run())];
  const buffer = o.buffer
    ? new BufferService({
        redis: t.redis,
        blocking: [blocking()],
        shards: t.shards,
        tracer: tracing.tracer,
        metrics,
        logger,
        batchSize: 100,
        ...FAST,
        dispatchIntervalMs: 5,
        breakerCooldownMs: 1000,
      })
    : undefined;
  if (buffer) watched.push(watch(buffer.run()));
  const outcomes = new Outcomes(t.redis, t.keys.events);
  const stream = o.stream(t);
  return {
    t,
    redis: t.redis,
    metrics,
    label: stream,
    outcomes,
    failures: lines,
    deadLetters: new DeadLetters(t.redis, t.keys.deadLetter),
    done: async () => new Set((await outcomes.read()).keys()),
    pending: async () => {
      let n = 0;
      for (const lane of ['high', 'normal', 'low']) n += await t.redis.xlen(t.keys.lane(lane));
      n += await t.redis.xlen(t.keys.ready('work'));
      for (const [key, group] of [
        [t.keys.captured, GROUPS.buffer],
        [t.keys.ready('work'), GROUPS.processor],
        [stream, stream === t.keys.ready('ghost') ? GROUPS.processor : ''],
      ]) {
        if (!group || !(await t.redis.exists(key))) continue;
        const groups = (await t.redis.xinfo('GROUPS', key)) as unknown[][];
        if (!groups.some((g) => g[g.indexOf('name') + 1] === group)) continue;
        n += ((await t.redis.xpending(key, group)) as [number])[0];
      }
      return n;
    },
    alive: () => watched.filter((w) => w.state !== 'running').map((w) => w.state),
    async close() {
      await Promise.all([buffer?.close(), runtime.close()]);
      for (const c of conns) c.disconnect();
      await t.cleanup();
    },
  };
}

/**
 * Every valid frame handled exactly once: completed by the processor, or (a lane entry
 * asking for a capability nobody offers) dropped whole; a malformed one never reached a processor.
 */
async function handledOnce(p: Pipeline, frames: string[]): Promise<void> {
  const count = await p.outcomes.read();
  for (const f of frames) {
    const c = count.get(f) ?? { completed: 0, dropped: 0 };
    expect(c.completed + c.dropped, f).toBe(1);
  }
}

describe('stream consumers fed malformed entries (real Redis)', { timeout: TIMEOUT }, () => {
  let p: Pipeline | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('buffer intake (frames:captured, group buffer)', async () => {
    p = await pipeline('fuzz-captured', { buffer: true, stream: (t) => t.keys.captured });
    const s = p;
    const total = { n: 0 };
    const valid: string[] = [];
    const run = async (cases: Mutation[]) => {
      const built = cases.map((m) => build(m, frameFields(), 'frame_id'));
      await feed(s, s.t.keys.captured, built, total);
      valid.push(...built.filter((b) => !b.expect).map((b) => b.key!));
    };
    await run([...BIG, { label: 'as is', apply: (q) => q }]);
    await fc.assert(fc.asyncProperty(fc.array(frameCase(false), { minLength: 1, maxLength: 12 }), run), {
      numRuns: RUNS,
      endOnFailure: true,
    });
    await handledOnce(s, valid);
    expect(await s.redis.hget(s.t.keys.counters, `dead_letter:${s.t.keys.captured}`)).toBe(String(total.n));
  });

  it('buffer dispatch (the lanes frames:waiting:high|normal|low, no group)', async () => {
    p = await pipeline('fuzz-lanes', { buffer: true, stream: (t) => t.keys.lane('normal') });
    const s = p;
    const total = { n: 0 };
    await waitFor('the processor registered', async () => (await s.redis.zcard(s.t.keys.processors)) === 1);
    const run = async (cases: Mutation[]) => {
      const built = cases.map((m) => build(m, frameFields(), 'frame_id'));
      await feed(s, s.t.keys.lane('normal'), built, total);
      await handledOnce(
        s,
        built.filter((b) => !b.expect).map((b) => b.key!),
      );
    };
    await run([...BIG, { label: 'as is', apply: (q) => q }]);
    await fc.assert(fc.asyncProperty(fc.array(frameCase(false), { minLength: 1, maxLength: 12 }), run), {
      numRuns: RUNS,
      endOnFailure: true,
    });
    expect(await s.redis.hget(s.t.keys.counters, `dead_letter:${s.t.keys.lane('normal')}`)).toBe(String(total.n));
  });

  it('buffer re-routing (the ready stream of a processor that is gone, group processor)', async () => {
    // The gone processor's stream is filled before the buffer starts (it reads the ids it
    // routed to at start, then every 5 s): one generated batch, and the huge ones.
    const cases = [...BIG, ...fc.sample(fc.array(frameCase(true), { minLength: 30, maxLength: 30 }), 1)[0]];
    const built = cases.map((m) => build(m, frameFields({ ready: 'ghost' }), 'frame_id'));
    let ids: string[] = [];
    p = await pipeline('fuzz-reroute', {
      buffer: true,
      stream: (t) => t.keys.ready('ghost'),
      before: async (t) => {
        await t.redis.xgroup('CREATE', t.keys.ready('ghost'), GROUPS.processor, '0', 'MKSTREAM');
        ids = await add(t.redis, t.keys.ready('ghost'), built);
        await t.redis.sadd(t.keys.routed, 'ghost');
      },
    });
    await check(p, built, ids, { n: 0 }, { dead: 0, malformed: 0 });
    await handledOnce(
      p,
      built.filter((b) => !b.expect).map((b) => b.key!),
    );
    expect(await p.redis.hget(p.t.keys.counters, `dead_letter:${p.t.keys.ready('ghost')}`)).toBe(
      String(built.filter((b) => b.expect).length),
    );
  });

  it('processor runtime (frames:ready:<id>, group processor)', async () => {
    p = await pipeline('fuzz-ready', { buffer: false, stream: (t) => t.keys.ready('work') });
    const s = p;
    const total = { n: 0 };
    const run = async (cases: Mutation[]) => {
      const built = cases.map((m) => build(m, frameFields({ ready: 'work' }), 'frame_id'));
      await feed(s, s.t.keys.ready('work'), built, total);
      await handledOnce(
        s,
        built.filter((b) => !b.expect).map((b) => b.key!),
      );
    };
    await run([...BIG, { label: 'as is', apply: (q) => q }]);
    await fc.assert(fc.asyncProperty(fc.array(frameCase(true), { minLength: 1, maxLength: 12 }), run), {
      numRuns: RUNS,
      endOnFailure: true,
    });
    expect(await s.redis.hget(s.t.keys.counters, `dead_letter:${s.t.keys.ready('work')}`)).toBe(String(total.n));
    // No valid frame failed (a malformed one with readable ids ends its stage as processing.failed, counted as dead_lettered).
    expect(await metricSum(s.metrics, 'detektr_frames_processed_total', { outcome: 'failed' })).toBe(0);
  });
});

// ------------------------------------------------------------------ the store

describe('store fed malformed events (real Redis + PostgreSQL)', { timeout: TIMEOUT }, () => {
  const schema = uniqueSchema('fuzz');
  let t: TestRedis;
  let pool: pg.Pool;
  let store: StoreService;
  let state: { state: string };
  const metrics = createMetrics('fuzz-store');
  const { logger, lines } = failureLog();

  beforeAll(async () => {
    t = await testRedis('fuzz-store');
    pool = createPool(TEST_DATABASE_URL, { schema, max: 4 });
    await migrate({ pool, schema });
    store = new StoreService({
      redis: t.redis,
      blocking: [t.blocking],
      shards: t.shards,
      pool,
      tracer: tracing.tracer,
      metrics,
      logger,
      batchSize: 50,
      blockMs: 100,
      claimIdleMs: 5000,
      maxDeliveries: 3,
    });
    state = watch(store.run());
  });

  afterAll(async () => {
    await store?.close();
    await pool?.end();
    await t?.cleanup();
    await dropSchema(schema);
  });

  it('store (events, group store): frame and camera events', async () => {
    const s: Subject = {
      redis: t.redis,
      metrics,
      label: t.keys.events,
      failures: lines,
      deadLetters: new DeadLetters(t.redis, t.keys.deadLetter),
      done: async (keys) => {
        const { rows } = await pool.query<{ id: string }>(
          'SELECT event_id AS id FROM frame_events WHERE event_id = ANY($1) UNION ALL SELECT event_id FROM camera_events WHERE event_id = ANY($1)',
          [keys],
        );
        return new Set(rows.map((r) => r.id));
      },
      pending: async () => ((await t.redis.xpending(t.keys.events, GROUPS.store)) as [number])[0],
      alive: () => (state.state === 'running' ? [] : [state.state]),
    };
    const total = { n: 0 };
    const stored: string[] = [];
    const run = async (cases: { m: Mutation; kind: 'frame' | 'camera'; t: number }[]) => {
      const built = cases.map(({ m, kind, t: type }) => build(m, eventFields(kind, type), 'event_id'));
      await feed(s, t.keys.events, built, total);
      stored.push(...built.filter((b) => !b.expect).map((b) => b.key!));
    };
    await run([
      ...BIG.map((m) => ({ m, kind: 'frame' as const, t: 0 })),
      ...FOUND_EVENTS,
      { m: { label: 'as is', apply: (q: Pairs) => q }, kind: 'frame', t: 0 },
    ]);
    await fc.assert(fc.asyncProperty(fc.array(eventCase, { minLength: 1, maxLength: 15 }), run), {
      numRuns: fuzzRuns(17),
      endOnFailure: true,
    });
    expect(await t.redis.hget(t.keys.counters, `dead_letter:${t.keys.events}`)).toBe(String(total.n));
    const { rows } = await pool.query<{ n: number }>(
      'SELECT (SELECT count(*) FROM frame_events)::int + (SELECT count(*) FROM camera_events)::int AS n',
    );
    expect(rows[0].n).toBe(new Set(stored).size);
  });
});
