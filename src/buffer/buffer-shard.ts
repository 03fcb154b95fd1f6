import { consumerName } from '../bus/stream-consumer.js';
import { bufferSettings, type BufferOptions } from './buffer-options.js';
import { BreakerBoard } from './breaker.js';
import { DispatchLoop } from './dispatch-loop.js';
import { Dispatcher } from './dispatcher.js';
import { Intake } from './intake.js';
import { LaneReader } from './lane-reader.js';
import type { Pressure } from './pressure.js';
import { ProcessorRegistry, type ProcessorInfo } from './registry.js';
import { RegistryView } from './registry-view.js';
import { Rerouter } from './rerouter.js';
import { RoutedIds } from './routed-ids.js';
import { createStrategy, Router } from './router.js';
import { Shedder } from './shedder.js';
import { StatusReporter, type BufferStatus, type ProcessorStatus } from './status.js';

/**
 * The buffer of one shard: wires its parts and runs its two loops over the shard's keys
 * (BufferService runs one per shard).
 *
 *   intake    (intake.ts)        frames:captured -> a priority lane, or straight to a
 *                                processor while the lanes are empty
 *   dispatch  (dispatch-loop.ts) measure, then the dispatcher (lanes -> frames:ready:<id>)
 *                                or the shedder (sustained overload), and now and then the
 *                                re-router (frames of dead or open processors move on)
 *
 * The loops share no mutable fields: each reads frozen snapshots from the registry view,
 * and the little they must share lives behind one object each (breakers: probe counts;
 * routed ids: the streams to watch). docs/architecture.md has the picture.
 */
export class BufferShard {
  readonly registry: ProcessorRegistry;
  private readonly view: RegistryView;
  private readonly intake: Intake;
  private readonly loop: DispatchLoop;
  private readonly reporter: StatusReporter;
  private running?: Promise<void>;

  constructor(opts: BufferOptions, shard: number) {
    const settings = bufferSettings(opts, shard);
    const { redis, keys, metrics, logger, streamMaxLen } = settings;
    const name = consumerName('buffer');
    const router = new Router(createStrategy(settings.strategy));
    const breakers = new BreakerBoard({ failureThreshold: settings.breakerFailures, cooldownMs: settings.breakerCooldownMs });
    const routed = new RoutedIds(redis, keys.routed);
    const lanes = new LaneReader({ redis, keys, metrics, logger, streamMaxLen });
    this.registry = new ProcessorRegistry(redis, keys, settings.processorTtlMs);
    this.view = new RegistryView({
      redis,
      keys,
      metrics,
      logger,
      registry: this.registry,
      breakers,
      pressure: { high: settings.pressureHigh, critical: settings.pressureCritical },
    });
    this.loop = new DispatchLoop({
      view: this.view,
      breakers,
      lanes,
      dispatcher: new Dispatcher({ settings, router, breakers, lanes, routed }),
      shedder: new Shedder({ settings, lanes }),
      rerouter: new Rerouter({ settings, router, breakers, routed, consumer: name, isClosing: () => this.loop.isClosing }),
      logger,
      intervalMs: settings.dispatchIntervalMs,
      claimIdleMs: settings.claimIdleMs,
    });
    this.intake = new Intake({ settings, view: this.view, router, breakers, routed, consumer: name, onLaned: () => this.loop.kick() });
    this.reporter = new StatusReporter({
      redis,
      keys,
      view: this.view,
      breakers,
      strategy: settings.strategy,
      shedPolicy: settings.shedPolicy,
    });
  }

  run(): Promise<void> {
    this.running ??= Promise.all([this.intake.run(), this.loop.run()]).then(() => undefined);
    return this.running;
  }

  /** Stops both loops once their work in hand is done; safe to call more than once. */
  async close(): Promise<void> {
    await Promise.all([this.intake.close(), this.loop.close()]);
  }

  async liveProcessors(): Promise<ProcessorInfo[]> {
    return [...(await this.view.registry()).processors];
  }

  get pressure(): Pressure {
    return this.view.latest.pressure;
  }

  status(): Promise<BufferStatus> {
    return this.reporter.status();
  }

  processorList(): Promise<ProcessorStatus[]> {
    return this.reporter.processors();
  }

  /** Makes the next status call see registry changes at once (after an API register/unregister). */
  invalidate(): void {
    this.view.invalidate();
  }
}
