import { type BufferOptions } from './buffer-options.js';
import { BufferShard } from './buffer-shard.js';
import { PRESSURE_LEVELS, type Pressure } from './pressure.js';
import type { ProcessorInfo, ProcessorRegistry } from './registry.js';
import { mergeProcessorStatus, mergeStatus, type BufferStatus, type ProcessorStatus } from './status.js';

export type { BufferOptions } from './buffer-options.js';
export type { BufferStatus, ProcessorStatus } from './status.js';

/**
 * The buffer: one BufferShard (intake + dispatch, buffer-shard.ts) per shard of the
 * pipeline, all routing to the processors of the one registry. Each shard's frames stay in
 * that shard (its lanes, its processors' ready streams there); several buffer processes
 * share every shard through the consumer group and the lane claims.
 */
export class BufferService {
  private readonly parts: BufferShard[];
  private running?: Promise<void>;

  constructor(opts: BufferOptions) {
    this.parts = opts.shards.all.map((_, i) => new BufferShard(opts, i));
  }

  /** Pipeline-wide: every shard's part reads the same registry keys. */
  get registry(): ProcessorRegistry {
    return this.parts[0].registry;
  }

  run(): Promise<void> {
    this.running ??= Promise.all(this.parts.map((p) => p.run())).then(() => undefined);
    return this.running;
  }

  /** Stops every shard's loops once their work in hand is done; safe to call more than once. */
  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.close()));
  }

  liveProcessors(): Promise<ProcessorInfo[]> {
    return this.parts[0].liveProcessors();
  }

  /** The most pressed shard's pressure. */
  get pressure(): Pressure {
    const all = this.parts.map((p) => p.pressure);
    return all.reduce((worst, p) => (PRESSURE_LEVELS.indexOf(p.level) > PRESSURE_LEVELS.indexOf(worst.level) ? p : worst));
  }

  async status(): Promise<BufferStatus> {
    return mergeStatus(await Promise.all(this.parts.map((p) => p.status())));
  }

  async processorList(): Promise<ProcessorStatus[]> {
    return mergeProcessorStatus(await Promise.all(this.parts.map((p) => p.processorList())));
  }

  /** Makes the next status call see registry changes at once (after an API register/unregister). */
  invalidate(): void {
    for (const p of this.parts) p.invalidate();
  }
}
