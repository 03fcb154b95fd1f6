import { createHash } from 'node:crypto';
import type { RedisClient } from './redis.js';

export type ScriptArg = string | number;

export interface ScriptCall {
  keys: string[];
  args: ScriptArg[];
}

const isNoScript = (err: unknown) => String((err as Error)?.message ?? err).includes('NOSCRIPT');

/**
 * A Lua script run with EVALSHA, falling back to EVAL when Redis does not have it cached
 * (first use, or after a restart). A script runs atomically: what it checks and what it
 * writes cannot interleave with another client, which is how detektr turns at-least-once
 * delivery into exactly-once effects (see the scripts in src/buffer/scripts.ts).
 */
export class LuaScript {
  readonly sha: string;

  constructor(
    readonly name: string,
    readonly lua: string,
  ) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: RedisClient, keys: string[], args: ScriptArg[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }

  /**
   * Many calls in one round trip (each call atomic on its own). Returns each call's reply,
   * or the Error it failed with; a failure of the connection itself throws.
   */
  async runMany(redis: RedisClient, calls: ScriptCall[]): Promise<unknown[]> {
    if (!calls.length) return [];
    const send = async (useEval: boolean, which: number[]) => {
      const p = redis.pipeline();
      for (const i of which) {
        const { keys, args } = calls[i];
        if (useEval) p.eval(this.lua, keys.length, ...keys, ...args);
        else p.evalsha(this.sha, keys.length, ...keys, ...args);
      }
      const res = await p.exec();
      if (!res) throw new Error(`script ${this.name}: pipeline aborted`);
      return res;
    };
    const out = new Array<unknown>(calls.length);
    const all = calls.map((_, i) => i);
    const first = await send(false, all);
    const retry: number[] = [];
    first.forEach(([err, v], i) => {
      if (err && isNoScript(err)) retry.push(i);
      else out[i] = err ?? v;
    });
    if (retry.length) {
      // NOSCRIPT means the call did not run: running it again is safe.
      const second = await send(true, retry);
      second.forEach(([err, v], j) => (out[retry[j]] = err ?? v));
    }
    return out;
  }
}
