import { ShutdownError } from './run-frame.js';

/**
 * The `concurrency` run slots of a processor instance: frames delivered beyond them wait
 * for one. Once the worker stops, waiting frames get ShutdownError (handed back unstarted).
 */
export class RunSlots {
  private used = 0;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly concurrency: number,
    private readonly stop: AbortSignal,
    private readonly onChange: (running: number) => void,
  ) {}

  /** Frames being processed now. */
  get running(): number {
    return this.used;
  }

  async acquire(): Promise<void> {
    while (this.used >= this.concurrency) {
      if (this.stop.aborted) throw new ShutdownError('the worker is stopping');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.stop.aborted) throw new ShutdownError('the worker is stopping');
    this.used++;
    this.onChange(this.used);
  }

  release(): void {
    this.used--;
    this.onChange(this.used);
    this.waiters.shift()?.();
  }

  /** Wakes every waiting frame (each re-checks the stop signal). */
  wakeAll(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
