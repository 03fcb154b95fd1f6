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
  let port = await freePort();
  const auth = o.password ? `:${encodeURIComponent(o.password)}@` : '';
  const urlOf = (p: number) => `redis://${auth}127.0.0.1:${p}`;
  let url = urlOf(port);
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
    const server = spawn('redis-server', args, { stdio: 'ignore' });
    proc = server;
    const end = Date.now() + 30_000;
    for (;;) {
      // The port may have been taken since freePort() by another process (another Redis,
      // even): only this server's own answer counts.
      if (server.exitCode !== null || server.signalCode !== null)
        throw new Error(`private redis-server on port ${port} exited (${server.exitCode ?? server.signalCode}): port taken?`);
      if (Date.now() > end) throw new Error(`private redis-server on port ${port} did not answer in 30 s`);
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined); // connect() rejects with it
      try {
        await probe.connect();
        if (new RegExp(`^process_id:${server.pid}\\s*$`, 'm').test(await probe.info('server'))) return;
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

  for (let attempt = 1; ; attempt++) {
    try {
      await start();
      break;
    } catch (err) {
      await kill();
      if (attempt >= 3) throw err;
      port = await freePort();
      url = urlOf(port);
    }
  }
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
