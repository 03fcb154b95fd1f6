import { readFileSync } from 'node:fs';

/** CPU time of the calling thread, from /proc/thread-self/stat (Linux); 0 elsewhere. */
export class ThreadCpu {
  private last = ThreadCpu.read();
  private static readonly MS_PER_TICK = 10; // USER_HZ is 100 on Linux

  static read(): number {
    try {
      const stat = readFileSync('/proc/thread-self/stat', 'latin1');
      // Fields after the ")" that ends the (possibly spaced) thread name; utime, stime are 14, 15.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) * ThreadCpu.MS_PER_TICK;
    } catch {
      return 0;
    }
  }

  takeMs(): number {
    const now = ThreadCpu.read();
    const d = now - this.last;
    this.last = now;
    return d;
  }
}
