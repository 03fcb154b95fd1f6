import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis, type RedisOptions } from 'ioredis';

/**
 * Real redis-server processes for the Cluster, Sentinel and TLS tests: Debian's
 * redis-server (7.x, built with TLS), each on a free loopback port of its own, in a fresh
 * temporary directory, without persistence. Nothing here is shared with the Redis on
 * 6379 that the other tests use.
 */

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A random port in 20000-29999 whose cluster bus port (+10000) is free too; never fixed ports. */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    if (taken.has(port) || taken.has(port + 10000) || taken.has(port - 10000)) continue;
    if ((await portFree(port)) && (await portFree(port + 10000))) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('no free port pair (port, port+10000) in 20000-29999');
}

interface Server {
  port: number;
  proc: ChildProcess;
}

function alive(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null;
}

/** Asks one server something on a throwaway connection that never retries or waits long. */
async function ask<T>(port: number, o: RedisOptions, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
    commandTimeout: 2000,
    enableOfflineQueue: false,
    ...o,
  });
  r.on('error', () => undefined); // connect() rejects with it
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

async function until(what: string, ms: number, fn: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
}

/** Starts redis-server with these arguments, and waits until this very process (by pid) answers. */
async function startServer(port: number, args: string[], o: RedisOptions): Promise<Server> {
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', ...args],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await until(`redis-server on port ${port}`, 15_000, async () => {
      if (!alive(proc))
        throw new Error(`redis-server on ${port} exited (${proc.exitCode ?? proc.signalCode}): ${stderr.trim() || 'port taken?'}`);
      const info = await ask(port, o, (r) => r.info('server'));
      return new RegExp(`^process_id:${proc.pid}\\s*$`, 'm').test(info);
    });
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  return { port, proc };
}

async function killServer(s: Server): Promise<void> {
  if (!alive(s.proc)) return;
  const exited = new Promise((r) => s.proc.once('exit', r));
  s.proc.kill('SIGKILL');
  await exited;
}

export interface ClusterNode {
  port: number;
  pid: number;
  role: 'master' | 'replica';
}

export interface TestCluster {
  /** redis+cluster://[:password@]127.0.0.1:p1,127.0.0.1:p2,... (every node; rediss+cluster:// with TLS). */
  url: string;
  password?: string;
  nodes: ClusterNode[];
  /** SIGKILL of the i-th master (in `nodes` order, of those started as masters); returns its port. */
  killMaster(i: number): Promise<number>;
  /** Waits until every live node says cluster_state:ok and the killed masters are marked failed. */
  waitForFailover(timeoutMs?: number): Promise<void>;
  /** Kills every server and removes the directory; idempotent. */
  stop(): Promise<void>;
}

export async function startRedisCluster(
  o: { masters?: number; replicasPerMaster?: 0 | 1; password?: string; nodeTimeoutMs?: number; tls?: TlsFiles } = {},
): Promise<TestCluster> {
  const masters = o.masters ?? 3;
  const replicas = o.replicasPerMaster ?? 0;
  const total = masters * (1 + replicas);
  const dir = mkdtempSync(join(tmpdir(), 'detektr-cluster-'));
  const auth: RedisOptions = { ...(o.password ? { password: o.password } : {}), ...(o.tls ? { tls: clientTls(o.tls) } : {}) };
  const servers: Server[] = [];
  const taken = new Set<number>();
  const killed = new Set<number>();
  const stop = async () => {
    await Promise.all(servers.map(killServer));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < total; i++) {
      for (let attempt = 1; ; attempt++) {
        const port = await freeClusterPort(taken);
        const args = [
          '--dir',
          dir,
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          // Small, so that a killed master's replica takes over within seconds.
          '--cluster-node-timeout',
          String(o.nodeTimeoutMs ?? 2000),
          // A replica may take over whatever the age of its data (tests kill masters at will).
          '--cluster-replica-validity-factor',
          '0',
          '--loglevel',
          'warning',
          ...(o.password ? ['--requirepass', o.password, '--masterauth', o.password] : []),
          // TLS only, between nodes too; the cluster bus is then the TLS port + 10000.
          ...(o.tls ? [...serverTlsArgs(port, o.tls), '--tls-cluster', 'yes', '--tls-replication', 'yes'] : []),
        ];
        try {
          servers.push(await startServer(port, args, auth));
          break;
        } catch (err) {
          if (attempt >= 3) throw err; // the port was taken between the check and the bind: another pair
        }
      }
    }
    const cli = [
      '--cluster',
      'create',
      ...servers.map((s) => `127.0.0.1:${s.port}`),
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ];
    const cliTls = o.tls ? ['--tls', '--cacert', o.tls.ca, '--cert', o.tls.cert, '--key', o.tls.key] : [];
    const cliAuth = o.password ? ['--no-auth-warning', '-a', o.password] : [];
    await run('redis-cli', [...cliTls, ...cliAuth, ...cli], { timeout: 60_000 });
    await until('cluster_state:ok on every node, every replica in sync', 60_000, async () => {
      for (const s of servers) {
        const [cluster, repl] = await ask(s.port, auth, async (r) => [(await r.cluster('INFO')) as string, await r.info('replication')]);
        if (!/^cluster_state:ok\s*$/m.test(cluster)) return false;
        if (/^role:slave\s*$/m.test(repl) && !(/^master_link_status:up\s*$/m.test(repl) && /^master_sync_in_progress:0\s*$/m.test(repl)))
          return false;
        if (replicas && /^role:master\s*$/m.test(repl) && !new RegExp(`^connected_slaves:${replicas}\\s*$`, 'm').test(repl)) return false;
      }
      return true;
    });
  } catch (err) {
    await stop();
    throw err;
  }

  const nodes: ClusterNode[] = [];
  for (const s of servers) {
    const repl = await ask(s.port, auth, (r) => r.info('replication'));
    nodes.push({ port: s.port, pid: s.proc.pid!, role: /^role:master\s*$/m.test(repl) ? 'master' : 'replica' });
  }
  const userinfo = o.password ? `:${encodeURIComponent(o.password)}@` : '';
  let stopped: Promise<void> | undefined;
  return {
    url: `${o.tls ? 'rediss' : 'redis'}+cluster://${userinfo}${servers.map((s) => `127.0.0.1:${s.port}`).join(',')}`,
    password: o.password,
    nodes,
    async killMaster(i) {
      const node = nodes.filter((n) => n.role === 'master')[i];
      if (!node) throw new Error(`no master number ${i}`);
      await killServer(servers.find((s) => s.port === node.port)!);
      killed.add(node.port);
      return node.port;
    },
    async waitForFailover(timeoutMs = 30_000) {
      const live = servers.filter((s) => alive(s.proc));
      await until('failover: cluster_state:ok on every live node, the killed masters marked failed', timeoutMs, async () => {
        for (const s of live) {
          const [info, text] = await ask(s.port, auth, async (r) => [
            (await r.cluster('INFO')) as string,
            (await r.cluster('NODES')) as string,
          ]);
          if (!/^cluster_state:ok\s*$/m.test(info)) return false;
          for (const port of killed) {
            const line = text.split('\n').find((l) => l.includes(` 127.0.0.1:${port}@`));
            if (line && !/\bfail\b/.test(line.split(' ')[2])) return false;
          }
        }
        return true;
      });
    },
    stop: () => (stopped ??= stop()),
  };
}

export interface TestSentinel {
  /** redis+sentinel://127.0.0.1:<sentinel port>/<masterName> */
  url: string;
  masterName: string;
  masterPort: number;
  replicaPort: number;
  sentinelPort: number;
  /** SIGKILL of the master; the sentinel promotes the replica. */
  killMaster(): Promise<void>;
  /** Waits until the sentinel names another master than `oldPort`. */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

/** A master, one replica and one sentinel (`redis-server <conf> --sentinel`, quorum 1). */
export async function startRedisSentinel(o: { masterName?: string; tls?: TlsFiles } = {}): Promise<TestSentinel> {
  const masterName = o.masterName ?? 'detektr-test';
  const conn: RedisOptions = o.tls ? { tls: clientTls(o.tls) } : {};
  // With TLS every hop is TLS: clients, replication, the sentinel's own links.
  const tlsArgs = (port: number) => (o.tls ? [...serverTlsArgs(port, o.tls), '--tls-replication', 'yes'] : []);
  const dir = mkdtempSync(join(tmpdir(), 'detektr-sentinel-'));
  const servers: Server[] = [];
  const taken = new Set<number>();
  const stop = async () => {
    await Promise.all(servers.map(killServer));
    rmSync(dir, { recursive: true, force: true });
  };
  let sentinelPort = 0;
  try {
    const masterPort = await freeClusterPort(taken);
    const master = await startServer(masterPort, ['--dir', dir, '--loglevel', 'warning', ...tlsArgs(masterPort)], conn);
    servers.push(master);
    const replicaPort = await freeClusterPort(taken);
    const replica = await startServer(
      replicaPort,
      ['--dir', dir, '--loglevel', 'warning', '--replicaof', '127.0.0.1', String(master.port), ...tlsArgs(replicaPort)],
      conn,
    );
    servers.push(replica);
    sentinelPort = await freeClusterPort(taken);
    const conf = join(dir, 'sentinel.conf'); // the sentinel rewrites its config file: one of its own
    writeFileSync(
      conf,
      [
        `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 1`,
        `sentinel down-after-milliseconds ${masterName} 1000`,
        `sentinel failover-timeout ${masterName} 10000`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
      ].join('\n'),
    );
    const sentinel = spawn(
      'redis-server',
      [
        conf,
        '--sentinel',
        '--port',
        String(sentinelPort),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--loglevel',
        'warning',
        ...tlsArgs(sentinelPort),
      ],
      {
        stdio: 'ignore',
      },
    );
    servers.push({ port: sentinelPort, proc: sentinel });
    await until('the replica in sync and known to the sentinel', 30_000, async () => {
      const repl = await ask(replica.port, conn, (r) => r.info('replication'));
      if (!/^master_link_status:up\s*$/m.test(repl)) return false;
      const known = await ask(sentinelPort, conn, (r) => r.call('SENTINEL', 'REPLICAS', masterName) as Promise<unknown[]>);
      return known.length === 1;
    });
    return {
      url: `${o.tls ? 'rediss' : 'redis'}+sentinel://127.0.0.1:${sentinelPort}/${masterName}`,
      masterName,
      masterPort: master.port,
      replicaPort: replica.port,
      sentinelPort,
      killMaster: () => killServer(master),
      async waitForFailover(oldPort, timeoutMs = 30_000) {
        let port = oldPort;
        await until('the sentinel to promote the replica', timeoutMs, async () => {
          const addr = await ask(sentinelPort, conn, (r) => r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName) as Promise<string[]>);
          port = Number(addr[1]);
          return port !== oldPort;
        });
        return port;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface TlsFiles {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  /** A second CA that signed nothing here: trusting it must fail the handshake. */
  otherCa: string;
  serverCert: string;
  serverKey: string;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl in a fresh directory. */
export async function makeTlsFiles(): Promise<TlsFiles> {
  const dir = mkdtempSync(join(tmpdir(), 'detektr-tls-'));
  const f = (n: string) => join(dir, n);
  const ssl = (args: string[]) => run('openssl', args, { timeout: 30_000 });
  const ca = async (name: string) => {
    await ssl([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      f(`${name}.key`),
      '-out',
      f(`${name}.pem`),
    ]);
  };
  await ca('ca');
  await ca('other-ca');
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const who of ['server', 'client']) {
    await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=detektr-${who}`, '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`)]);
    await ssl([
      'x509',
      '-req',
      '-in',
      f(`${who}.csr`),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-days',
      '1',
      '-out',
      f(`${who}.pem`),
      ...(who === 'server' ? ['-extfile', f('server.ext')] : []),
    ]);
  }
  return {
    dir,
    ca: f('ca.pem'),
    otherCa: f('other-ca.pem'),
    cert: f('client.pem'),
    key: f('client.key'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
  };
}

/** Server flags: TLS only on `port` (`--port 0` after the plain `--port` turns that off), client certificates required. */
function serverTlsArgs(port: number, files: TlsFiles): string[] {
  return [
    '--port',
    '0',
    '--tls-port',
    String(port),
    '--tls-cert-file',
    files.serverCert,
    '--tls-key-file',
    files.serverKey,
    '--tls-ca-cert-file',
    files.ca,
    '--tls-auth-clients',
    'yes',
  ];
}

function clientTls(files: TlsFiles): { ca: Buffer; cert: Buffer; key: Buffer } {
  return { ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key) };
}

export interface TlsRedis {
  /** rediss://127.0.0.1:<port> */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** A redis-server that speaks only TLS and requires a client certificate signed by the test CA. */
export async function startTlsRedis(files: TlsFiles): Promise<TlsRedis> {
  const port = await freeClusterPort(new Set());
  const args = [...serverTlsArgs(port, files), '--dir', files.dir, '--loglevel', 'warning'];
  const tls = clientTls(files);
  // `--port 0` after ours turns the plain port off; the probe speaks TLS to the TLS port.
  const s = await startServer(port, args, { tls });
  return { url: `rediss://127.0.0.1:${port}`, port, stop: () => killServer(s) };
}
