import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './rtsp-server.js';

/**
 * A redis-server of the test's own, on a free port, without persistence (like the shared
 * one): for tests that stop, restart or password-protect Redis without disturbing the
 * Redis every other test file shares.
 */
export interface PrivateRedis {
  url: string;
  port: number;
  readonly pid: number;
  /** SIGKILL (nothing saved: every key is gone), then a fresh server on the same port. */
  restart(downMs?: number): Promise<void>;
  kill(): Promise<void>;
  start(): Promise<void>;
  /** used_memory in bytes. */
  usedMemory(): Promise<number>;
  stop(): Promise<void>;
}

export async function startPrivateRedis(o: { password?: string; maxmemory?: string } = {}): Promise<PrivateRedis> {
  const port = await freePort();
  const auth = o.password ? `:${encodeURIComponent(o.password)}@` : '';
  const url = `redis://${auth}127.0.0.1:${port}`;
  let proc: ChildProcess | undefined;

  async function start(): Promise<void> {
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ];
    if (o.password) args.push('--requirepass', o.password);
    if (o.maxmemory) args.push('--maxmemory', o.maxmemory);
    proc = spawn('redis-server', args, { stdio: 'ignore' });
    const end = Date.now() + 10_000;
    for (;;) {
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined); // connect() rejects with it
      try {
        await probe.connect();
        if ((await probe.ping()) === 'PONG') return;
      } catch (err) {
        if (Date.now() > end) throw new Error(`private redis-server on port ${port} did not start: ${(err as Error).message}`);
      } finally {
        probe.disconnect();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function kill(): Promise<void> {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  await start();
  return {
    url,
    port,
    get pid() {
      return proc!.pid!;
    },
    start,
    kill,
    async restart(downMs = 0) {
      await kill();
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    async usedMemory() {
      const r = new Redis(url, { maxRetriesPerRequest: 1 });
      try {
        return Number(/used_memory:(\d+)/.exec(await r.info('memory'))?.[1]);
      } finally {
        r.disconnect();
      }
    },
    stop: kill,
  };
}
