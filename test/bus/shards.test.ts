import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeBusEvent } from '../../src/bus/event-codec.js';
import { redisKeys } from '../../src/bus/keys.js';
import { checkLayout, hashSlot, shardOfCamera, shardSetOf, ShardSet, shardTag } from '../../src/bus/shards.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import { runDetektr } from '../helpers/cli.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { REDIS_URL, testRedis, uniquePrefix } from '../helpers/redis.js';

const PER_SHARD = (k: ReturnType<typeof redisKeys>) => [
  k.captured,
  k.ready('motion-1'),
  k.events,
  k.results,
  k.deadLetter,
  k.payload('01ARZ3NDEKTSV4RRFFQ69G5FAV'),
  k.thumbnail(k.payload('01ARZ3NDEKTSV4RRFFQ69G5FAV')),
  k.counters,
  k.lane('high'),
  k.routed,
];

describe('shard layout', () => {
  it('keeps the untagged key names of one plain Redis with one shard', () => {
    const k = shardSetOf({ prefix: 'detektr:', redisUrl: 'redis://127.0.0.1:6379', shards: 1 }).all[0];
    expect([k.captured, k.ready('m'), k.events, k.payload('F'), k.counters, k.lane('low'), k.processor('m'), k.processors]).toEqual([
      'detektr:frames:captured',
      'detektr:frames:ready:m',
      'detektr:events',
      'detektr:frame:F',
      'detektr:counters',
      'detektr:frames:waiting:low',
      'detektr:processor:m',
      'detektr:processors',
    ]);
  });

  it('puts every key one frame touches under its shard hash tag, and the registry under {g}', () => {
    const shards = shardSetOf({ prefix: 'p:', redisUrl: 'redis://127.0.0.1:6379', shards: 3 });
    expect(shards.all.map((k) => k.shard)).toEqual([0, 1, 2]);
    for (const k of shards.all) {
      // Redis Cluster hashes the text between the first { and the next }.
      for (const key of PER_SHARD(k)) expect(/\{([^}]*)\}/.exec(key)?.[1], key).toBe(k.tag);
      for (const key of [k.processor('m'), k.processors, k.validateSnapshot]) expect(/\{([^}]*)\}/.exec(key)?.[1], key).toBe('g');
    }
    // Fixed: another tag would leave a pipeline's frames in keys nobody reads after an upgrade.
    expect(shards.all.map((k) => k.tag)).toEqual(['s0.4', 's1.1', 's2.1']);
    expect(shards.all[1].captured).toBe('p:{s1.1}:frames:captured');
  });

  it('spreads the shards over the slot space, so each master of an evenly split cluster gets its share', () => {
    expect(hashSlot('123456789')).toBe(0x31c3); // the CRC16/XMODEM check value Redis Cluster uses
    for (const n of [1, 2, 3, 4, 6, 9]) {
      for (let i = 0; i < n; i++) {
        const slot = hashSlot(shardTag(i, n));
        expect(slot, `shard ${i} of ${n}`).toBeGreaterThanOrEqual(Math.floor((i * 16384) / n));
        expect(slot, `shard ${i} of ${n}`).toBeLessThan(Math.floor(((i + 1) * 16384) / n));
      }
    }
  });

  it('tags keys on a cluster URL even with one shard', () => {
    const s = shardSetOf({ prefix: 'p:', redisUrl: 'redis+cluster://127.0.0.1:7000,127.0.0.1:7001', shards: 1 });
    expect(s.all[0].captured).toBe('p:{s0}:frames:captured');
  });

  it('maps a camera to the same shard in every process and version (FNV-1a of its id), and spreads ids evenly', () => {
    // Fixed values: a change of the hash would move every camera to another shard on upgrade.
    expect(['front', 'back', 'cam-1', 'cam-2', 'cam-3'].map((id) => shardOfCamera(id, 3))).toEqual([1, 1, 1, 2, 0]);
    expect(shardOfCamera('a', 2 ** 31)).toBe(0xe40c292c % 2 ** 31); // FNV-1a("a"), the published test vector
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[shardOfCamera(`camera-${i}`, 3)]++;
    for (const n of counts) expect(n).toBeGreaterThan(800);
  });

  it('pins cameras given as id=shard, and names what is wrong with a bad pin', () => {
    const s = shardSetOf({ prefix: 'p:', redisUrl: 'redis://x', shards: 4, cameraShards: ['front=3', 'back=0'] });
    expect([s.shardOf('front'), s.shardOf('back')]).toEqual([3, 0]);
    expect(s.forCamera('front').tag).toBe(shardTag(3, 4));
    const bad =
      (cameraShards: string[], shards = 2) =>
      () =>
        shardSetOf({ prefix: 'p:', redisUrl: 'redis://x', shards, cameraShards });
    expect(bad(['front=2'])).toThrow(InvalidInputError);
    expect(bad(['front=2'])).toThrow(/cameraShards: camera "front": shard 2 does not exist \(shards: 2, so 0-1\)/);
    expect(bad(['front'])).toThrow(/cameraShards: "front" is not id=shard/);
    expect(bad(['front=1', 'front=0'])).toThrow(/camera "front" is given twice/);
    expect(() => new ShardSet('p:', { count: 0, tagged: true })).toThrow(/shards must be a whole number >= 1/);
  });
});

describe('one layout per pipeline', () => {
  it('records the first worker’s layout and refuses a worker with another, naming both', async () => {
    const t = await testRedis('layout');
    try {
      const three = shardSetOf({ prefix: t.prefix, redisUrl: REDIS_URL, shards: 3 });
      await checkLayout(t.redis, three);
      await checkLayout(t.redis, three); // the same layout again: fine
      const two = shardSetOf({ prefix: t.prefix, redisUrl: REDIS_URL, shards: 2 });
      await expect(checkLayout(t.redis, two)).rejects.toThrow(/runs with shards=3 but this worker has shards=2/);
      const one = shardSetOf({ prefix: t.prefix, redisUrl: REDIS_URL, shards: 1 });
      await expect(checkLayout(t.redis, one)).rejects.toThrow(InvalidInputError);
    } finally {
      await t.cleanup();
    }
  });
});

describe('run --shards 3 on one plain Redis', () => {
  const prefix = uniquePrefix('shards-run');
  const schema = uniqueSchema('shards_run');
  afterAll(async () => {
    const t = await testRedis('shards-run-clean');
    const { deleteKeysWithPrefix } = await import('../../src/bus/redis.js');
    await deleteKeysWithPrefix(t.redis, prefix);
    await t.cleanup();
    await dropSchema(schema);
  });

  it('keeps each camera in its shard from capture to store, every frame completed, and a worker with another count exits 2', async () => {
    const env = { REDIS_URL, DATABASE_URL: TEST_DATABASE_URL, DETEKTR_PREFIX: prefix, DETEKTR_DB_SCHEMA: schema };
    const cams = ['c1', 'c2', 'c3', 'c4'];
    const run = await runDetektr(
      [
        'run',
        '--shards',
        '3',
        ...cams.flatMap((c) => ['--camera', `${c}=testsrc`]),
        '--camera-shard',
        'c1=2',
        '--processor',
        'sample',
        '--max-frames',
        '3',
        '--fps',
        '10',
      ],
      env,
      120_000,
    );
    expect(run.code, run.stderr).toBe(0);
    const shards = shardSetOf({ prefix, redisUrl: REDIS_URL, shards: 3, cameraShards: ['c1=2'] });
    const t = await testRedis('shards-run-check');
    const db = new pg.Client({ connectionString: TEST_DATABASE_URL });
    try {
      for (const keys of shards.all) {
        const cameras = new Set((await t.redis.xrange(keys.events, '-', '+')).map(([, f]) => decodeBusEvent(f)).map((e) => e.cameraId));
        const want = cams.filter((c) => shards.shardOf(c) === keys.shard);
        expect([...cameras].sort(), `cameras in ${keys.events}`).toEqual(want.sort());
      }
      expect(shards.shardOf('c1')).toBe(2);
      await db.connect();
      const rows = await db.query<{ camera_id: string; state: string; n: string }>(
        `SELECT camera_id, state, count(*) AS n FROM "${schema}".frame_metadata GROUP BY 1, 2 ORDER BY 1, 2`,
      );
      expect(rows.rows.map((r) => [r.camera_id, r.state, Number(r.n) >= 3])).toEqual(cams.map((c) => [c, 'completed', true]));

      // validate reads the layout back: the shards' real tags, and a mismatch is a failed check.
      const check = async (n: string) => {
        const v = await runDetektr(['validate', '--shards', n, '--json'], env, 30_000);
        return (JSON.parse(v.stdout) as { checks: { check: string; status: string; detail: string }[] }).checks.find(
          (c) => c.check === 'shards',
        );
      };
      expect(await check('3')).toMatchObject({
        status: 'ok',
        detail: `3 shards (${shards.all.map((k) => `{${k.tag}}`).join(' ')}), as the workers recorded`,
      });
      expect(await check('2')).toMatchObject({
        status: 'fail',
        detail: expect.stringMatching(/workers run with shards=3, this check with 2/) as unknown,
      });

      const other = await runDetektr(['buffer', '--shards', '2'], env, 30_000);
      expect(other.code).toBe(2);
      expect(other.stderr).toMatch(/runs with shards=3 but this worker has shards=2/);
    } finally {
      await db.end();
      await t.cleanup();
    }
  });

  it('rejects a pin of a camera it does not capture, or of a shard that does not exist, before starting (exit 2)', async () => {
    const env = { REDIS_URL, DATABASE_URL: TEST_DATABASE_URL, DETEKTR_PREFIX: prefix, DETEKTR_DB_SCHEMA: schema };
    const unknown = await runDetektr(['run', '--shards', '2', '--camera', 'c1=testsrc', '--camera-shard', 'nope=1'], env, 30_000);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/cameraShards: no camera "nope" \(cameras: c1\)/);
    const beyond = await runDetektr(['capture', '--shards', '2', '--camera', 'c1=testsrc', '--camera-shard', 'c1=5'], env, 30_000);
    expect(beyond.code).toBe(2);
    expect(beyond.stderr).toMatch(/shard 5 does not exist/);
    const zero = await runDetektr(['run', '--shards', '0'], env, 30_000);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toMatch(/--shards/);
  });
});
