import { InvalidInputError } from '../domain/errors.js';
import { redisKeys, type RedisKeys } from './keys.js';
import type { RedisClient } from './redis.js';

export interface ShardLayout {
  /** Shards the pipeline's keys are spread over (1: everything in one). */
  count: number;
  /**
   * Keys carry hash tags (`{s0}`..., `{g}`): on Redis Cluster, where a MULTI or script must
   * stay in one slot, and with more than one shard. One plain Redis with one shard keeps
   * the untagged keys of every earlier version.
   */
  tagged: boolean;
  /** Cameras given a shard by configuration (camera id -> shard); the others go by hash. */
  pinned?: ReadonlyMap<string, number>;
}

const SLOTS = 16384;

/** The Redis Cluster hash slot of a hash tag: CRC16 (XMODEM) mod 16384, as the cluster computes it. */
export function hashSlot(tag: string): number {
  let crc = 0;
  for (const byte of Buffer.from(tag)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % SLOTS;
}

/**
 * Shard i's hash tag: `s<i>` when its slot lies in the i-th of `count` equal slot ranges,
 * else the first `s<i>.<k>` that does. A cluster created with `redis-cli --cluster create`
 * splits the slots in equal ranges, so with as many shards as masters (or a multiple) each
 * master gets its share of the shards; plain `s0, s1, s2` would put two of three on one
 * master (slots 11097, 15224, 2843).
 */
export function shardTag(i: number, count: number): string {
  const lo = Math.floor((i * SLOTS) / count);
  const hi = Math.floor(((i + 1) * SLOTS) / count);
  const within = (tag: string) => {
    const slot = hashSlot(tag);
    return slot >= lo && slot < hi;
  };
  if (within(`s${i}`)) return `s${i}`;
  for (let k = 1; ; k++) if (within(`s${i}.${k}`)) return `s${i}.${k}`;
}

/** FNV-1a (32 bit) of the camera id, mod the shard count: stable across processes, versions and restarts. */
export function shardOfCamera(cameraId: string, count: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < cameraId.length; i++) {
    h ^= cameraId.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % count;
}

/**
 * A pipeline's key sets, one per shard. Every frame lives in its camera's shard from
 * capture to store; capture writes to that shard only, and every buffer, processor and
 * store instance consumes every shard (their consumer groups share the work, so instances
 * run side by side without duplicates). The registry and other pipeline-wide keys are in
 * `global` (one slot), which no per-frame script touches.
 */
export class ShardSet {
  readonly all: readonly RedisKeys[];
  /** Pipeline-wide keys (registry, layout); the same names in every shard's key set. */
  readonly global: RedisKeys;

  constructor(
    readonly prefix: string,
    readonly layout: ShardLayout,
  ) {
    if (!Number.isInteger(layout.count) || layout.count < 1)
      throw new InvalidInputError(`shards must be a whole number >= 1 (got ${layout.count})`);
    if (layout.count > 1 && !layout.tagged) throw new InvalidInputError('more than one shard needs tagged keys');
    for (const [camera, shard] of layout.pinned ?? []) {
      if (!Number.isInteger(shard) || shard < 0 || shard >= layout.count)
        throw new InvalidInputError(
          `cameraShards: camera "${camera}": shard ${shard} does not exist (shards: ${layout.count}, so 0-${layout.count - 1})`,
        );
    }
    this.all = Array.from({ length: layout.count }, (_, i) =>
      redisKeys(prefix, layout.tagged ? { index: i, tag: shardTag(i, layout.count) } : undefined),
    );
    this.global = this.all[0];
  }

  get count(): number {
    return this.layout.count;
  }

  shardOf(cameraId: string): number {
    return this.layout.pinned?.get(cameraId) ?? shardOfCamera(cameraId, this.layout.count);
  }

  forCamera(cameraId: string): RedisKeys {
    return this.all[this.shardOf(cameraId)];
  }
}

/** A service's blocking connections, one per shard in `shards.all`'s order (a blocked read holds its connection). */
export function onePerShard<T>(service: string, shards: ShardSet, blocking: T[]): T[] {
  if (blocking.length !== shards.count)
    throw new Error(`the ${service} needs one blocking connection per shard (${shards.count}), got ${blocking.length}`);
  return blocking;
}

/** One plain Redis, one shard, untagged keys: what tests and single-node tools use. */
export function singleShard(prefix: string): ShardSet {
  return new ShardSet(prefix, { count: 1, tagged: false });
}

const CLUSTER_URL = /^rediss?\+cluster:/i;

/**
 * The shards a worker runs with, from its config: tags on a cluster URL or with more than
 * one shard; `cameraShards` entries (`id=shard`) pin cameras. Errors name the setting.
 */
export function shardSetOf(config: { prefix: string; redisUrl: string; shards: number; cameraShards?: string[] }): ShardSet {
  const pinned = new Map<string, number>();
  for (const spec of config.cameraShards ?? []) {
    const m = /^([^=]+)=(\d+)$/.exec(spec);
    if (!m) throw new InvalidInputError(`cameraShards: "${spec}" is not id=shard (e.g. cam1=2)`);
    if (pinned.has(m[1])) throw new InvalidInputError(`cameraShards: camera "${m[1]}" is given twice`);
    pinned.set(m[1], Number(m[2]));
  }
  const tagged = config.shards > 1 || CLUSTER_URL.test(config.redisUrl);
  return new ShardSet(config.prefix, { count: config.shards, tagged, pinned });
}

/**
 * Workers of one pipeline must agree on the layout, or capture would write shards nobody
 * reads. The first worker records it (HSETNX); a later one with another layout fails
 * with a InvalidInputError naming both. Pinned cameras are not recorded: where a camera goes
 * matters only to capture.
 */
export async function checkLayout(redis: RedisClient, shards: ShardSet): Promise<void> {
  const want = `${shards.count}${shards.layout.tagged ? ' tagged' : ''}`;
  await redis.hsetnx(shards.global.layout, 'shards', want);
  const have = await redis.hget(shards.global.layout, 'shards');
  if (have !== null && have !== want) {
    throw new InvalidInputError(
      `pipeline "${shards.prefix}" runs with shards=${have.split(' ')[0]} but this worker has shards=${shards.count}: ` +
        `set DETEKTR_SHARDS (or --shards) to ${have.split(' ')[0]} for every worker (changing it needs an empty pipeline: drain it, then delete ${shards.global.layout})`,
    );
  }
}
