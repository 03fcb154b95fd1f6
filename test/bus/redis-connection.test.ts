import { rmSync } from 'node:fs';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterState, redisNodes } from '../../src/bus/cluster-nodes.js';
import { closeRedis, createBlockingRedis, createRedis, deleteKeysWithPrefix, scanKeys, type RedisClient } from '../../src/bus/redis.js';
import { parseRedisUrl } from '../../src/bus/redis-url.js';
import { loadConfig, redactedConfig } from '../../src/config/load-config.js';
import { redactSecrets } from '../../src/config/redact-text.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import { connectionCause, redisReady } from '../../src/ops/connection-cause.js';
import { createLogger } from '../../src/telemetry/logger.js';
import {
  makeTlsFiles,
  startRedisCluster,
  startRedisSentinel,
  startTlsRedis,
  type TestCluster,
  type TlsFiles,
} from '../helpers/redis-cluster.js';
import { runDetektr } from '../helpers/cli.js';
import { uniquePrefix, waitFor } from '../helpers/redis.js';
import { freePort } from '../helpers/rtsp-server.js';

const SECRET = 'Sw0rdf1sh-cluster';

/** Keys spread over many slots (and so over every master). */
const keysOf = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}k${i}`);

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

describe('the Redis setting: URL forms', () => {
  it('parses one server, a cluster node list and sentinels with their master', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6379/2')).toEqual({ kind: 'standalone', url: 'redis://127.0.0.1:6379/2', tls: false });
    expect(parseRedisUrl('rediss://h:6380')).toMatchObject({ kind: 'standalone', tls: true });
    expect(parseRedisUrl(`redis+cluster://app:${encodeURIComponent('p@ss:w/rd')}@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,node4`)).toEqual({
      kind: 'cluster',
      tls: false,
      username: 'app',
      password: 'p@ss:w/rd',
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '::1', port: 7002 },
        { host: 'node4', port: 6379 },
      ],
    });
    expect(parseRedisUrl('rediss+cluster://:pw@h1:1,h2:2/')).toMatchObject({ kind: 'cluster', tls: true, password: 'pw' });
    expect(parseRedisUrl('redis+sentinel://:pw@s1:26379,s2/mymaster/3?sentinelPassword=sp')).toEqual({
      kind: 'sentinel',
      tls: false,
      password: 'pw',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
      masterName: 'mymaster',
      db: 3,
      sentinelPassword: 'sp',
    });
    expect(parseRedisUrl('rediss+sentinel://s1:1/m')).toMatchObject({ kind: 'sentinel', tls: true, db: 0 });
  });

  it.each([
    ['http://h:1', /is not a Redis URL/],
    ['redis+cluster://', /empty host \(number 1/],
    ['redis+cluster://h1:1,,h3:3', /empty host \(number 2/],
    ['redis+cluster://h1:1,h2:0', /bad port \(host number 2/],
    ['redis+cluster://h1:1,h2:70000', /bad port/],
    ['redis+cluster://h1:1,h 2:2', /bad host \(number 2/],
    ['redis+cluster://h1:1/1', /only database 0/],
    ['redis+cluster://h1:1?x=1', /query parameters/],
    ['redis+sentinel://s1:1', /needs the master name/],
    ['redis+sentinel://s1:1/m/x', /bad database/],
    ['redis+sentinel://s1:1/m?token=1', /unknown query parameter "token"/],
    ['redis+cluster://u:%zz@h:1', /bad percent-encoding/],
  ])('rejects %s, naming the setting', (url, why) => {
    const err = thrown(() => parseRedisUrl(url, 'REDIS_URL'));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err.message).toMatch(/^REDIS_URL: "/);
    expect(err.message).toMatch(why);
  });

  it('never shows the password of a bad cluster or sentinel URL, in errors, config output or log lines', () => {
    const bad = [
      `redis+cluster://app:${SECRET}@h1:1,h2:x`,
      `redis+cluster://:${SECRET}@h1:1,,h2`,
      `rediss+sentinel://:${SECRET}@s1:1`,
      `redis+sentinel://s1:1/m?sentinelPassword=${SECRET}&x=1`,
    ];
    for (const url of bad) {
      const err = thrown(() => loadConfig({ env: { REDIS_URL: url }, configPath: '/dev/null' }));
      expect(err, url).toBeInstanceOf(InvalidInputError);
      expect(err.message).toMatch(/^REDIS_URL: /);
      expect(err.message).not.toContain(SECRET);
    }
    const good = `redis+cluster://app:${SECRET}@h1:7000,h2:7001`;
    const { config } = loadConfig({ env: { REDIS_URL: good }, configPath: '/dev/null' });
    expect(config.redisUrl).toBe(good);
    expect(redactedConfig(config).redisUrl).toBe('redis+cluster://app:***@h1:7000,h2:7001');
    const sentinel = loadConfig({ env: { REDIS_URL: `redis+sentinel://s1:1,s2:2/m?sentinelPassword=${SECRET}` }, configPath: '/dev/null' });
    expect(redactedConfig(sentinel.config).redisUrl).toBe('redis+sentinel://s1:1,s2:2/m?sentinelPassword=***');
    const lines: string[] = [];
    createLogger({ component: 't', write: (l) => lines.push(l) }).warn('redis error', {
      error: new Error(`cannot reach ${good}: refused`),
    });
    expect(lines.join('')).toContain('app:***@h1:7000,h2:7001');
    expect(lines.join('') + redactSecrets(`at ${good}.`)).not.toContain(SECRET);
  });

  it('TLS files only with a rediss URL; a missing file names its key and path', () => {
    const plain = thrown(() => createRedis({ url: 'redis://127.0.0.1:1', name: 't', tls: { ca: '/etc/hostname' } }));
    expect(plain).toBeInstanceOf(InvalidInputError);
    expect(plain.message).toMatch(/redisTlsCa set but the Redis URL is not TLS/);
    const missing = thrown(() => createRedis({ url: 'rediss+cluster://127.0.0.1:1', name: 't', tls: { ca: '/nonexistent/ca.pem' } }));
    expect(missing).toBeInstanceOf(InvalidInputError);
    expect(missing.message).toBe('redisTlsCa /nonexistent/ca.pem: cannot be read (ENOENT)');
    const half = thrown(() => createRedis({ url: 'rediss://127.0.0.1:1', name: 't', tls: { cert: '/etc/hostname' } }));
    expect(half.message).toMatch(/redisTlsCert set without redisTlsKey/);
    expect(loadConfig({ env: { REDIS_TLS_CA: '/x/ca.pem', DETEKTR_PG_POOL_SIZE: '4' }, configPath: '/dev/null' }).config).toMatchObject({
      redisTlsCa: '/x/ca.pem',
      pgPoolSize: 4,
    });
    expect(() => loadConfig({ env: { DETEKTR_PG_POOL_SIZE: '0' }, configPath: '/dev/null' })).toThrow(
      /DETEKTR_PG_POOL_SIZE: "0" is out of range/,
    );
  });
});

describe('the Redis setting on the command line', () => {
  it('config show prints a cluster URL with the password masked; a bad one exits 2 naming the flag, without it', async () => {
    const env = { DETEKTR_CONFIG: undefined, REDIS_URL: undefined };
    const shown = await runDetektr(['config', 'show', '--json', '--redis-url', `redis+cluster://app:${SECRET}@h1:7000,h2:7001`], env);
    expect(shown.code, shown.stderr).toBe(0);
    expect((JSON.parse(shown.stdout) as { values: { redisUrl: { value: string } } }).values.redisUrl.value).toBe(
      'redis+cluster://app:***@h1:7000,h2:7001',
    );
    const bad = await runDetektr(['validate', '--json', '--redis-url', `redis+cluster://app:${SECRET}@h1:7000,h2:port`], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^detektr: --redis-url: "redis\+cluster:\/\/app:\*\*\*@h1:7000,h2:port" has a bad port \(host number 2/m);
    const noTls = await runDetektr(['validate', '--redis-url', 'redis+cluster://127.0.0.1:1', '--redis-tls-ca', '/etc/hostname'], env);
    expect(noTls.code).toBe(2);
    expect(noTls.stderr).toMatch(/redisTlsCa set but the Redis URL is not TLS/);
    expect(shown.stdout + shown.stderr + bad.stdout + bad.stderr).not.toContain(SECRET);
  }, 60_000);
});

describe('no call hangs on a cluster that never comes up', () => {
  it('a command fails after its deadline, though the client keeps reconnecting', async () => {
    const ports = [await freePort(), await freePort()];
    const redis = createRedis({
      url: `redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`,
      name: 'detektr:test',
      commandTimeoutMs: 500,
    });
    try {
      await expect(redis.get('k')).rejects.toThrow(/timed out/i);
      await expect(redis.set('k', 'v')).rejects.toThrow(/timed out/i);
      expect(redis.status).not.toBe('end'); // still retrying: it connects once the cluster is there
    } finally {
      await closeRedis(redis);
    }
  });
});

describe('a Redis Cluster (3 masters, 1 replica each)', () => {
  let cluster: TestCluster;
  let redis: RedisClient;
  const logs: string[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
    redis = createRedis({ url: cluster.url, name: 'detektr:test', logger: createLogger({ component: 't', write: (l) => logs.push(l) }) });
  }, 90_000);
  afterAll(async () => {
    if (redis) await closeRedis(redis);
    await cluster?.stop();
  });

  it('connects as a Cluster, each node knowing the connection by name; keys of every slot work', async () => {
    expect(redis).toBeInstanceOf(Cluster);
    const prefix = uniquePrefix('cluster');
    const keys = keysOf(prefix, 300);
    await Promise.all(keys.map((k, i) => redis.set(k, String(i))));
    expect(await Promise.all(keys.map((k) => redis.get(k)))).toEqual(keys.map((_, i) => String(i)));
    const masters = (redis as Cluster).nodes('master');
    expect(masters).toHaveLength(3);
    for (const m of masters) {
      expect(await m.dbsize(), `${m.options.port} holds some of the keys`).toBeGreaterThan(0);
      expect(await m.client('LIST')).toMatch(/name=detektr:test/);
    }
    const scanned: string[] = [];
    for await (const k of scanKeys(redis, `${prefix}*`)) scanned.push(k);
    expect(scanned.sort()).toEqual([...keys].sort());

    expect(await deleteKeysWithPrefix(redis, prefix)).toBe(300);
    for (const m of masters) expect(await m.keys(`${prefix}*`)).toEqual([]);
  });

  it('reports every node with its role, slots and version, and the cluster state', async () => {
    const nodes = await redisNodes(redis, 2000);
    expect(nodes).toHaveLength(6);
    expect(nodes.filter((n) => n.role === 'master')).toHaveLength(3);
    expect(nodes.filter((n) => n.role === 'replica')).toHaveLength(3);
    for (const n of nodes) {
      expect(n.status).toBe('ok');
      expect(n.version).toMatch(/^\d+\.\d+/);
      expect(cluster.nodes.map((c) => `127.0.0.1:${c.port}`)).toContain(n.address);
    }
    expect(nodes.filter((n) => n.slots).map((n) => n.slots)).toHaveLength(3);
    expect(await clusterState(redis)).toEqual({ state: 'ok', slotsAssigned: 16384, slotsFail: 0, knownNodes: 6 });
  });

  it('a blocking connection is a cluster client of its own, with a longer timeout', async () => {
    const blocking = createBlockingRedis({ url: cluster.url, name: 'detektr:test', blockMs: 300 });
    try {
      expect(blocking).toBeInstanceOf(Cluster);
      expect(blocking).not.toBe(redis);
      const stream = `${uniquePrefix('block')}s`;
      expect(await blocking.xread('BLOCK', 300, 'STREAMS', stream, '$')).toBeNull();
    } finally {
      await closeRedis(blocking);
    }
  });

  it('survives kill -9 of a master: INCR on keys of every slot resumes after the replica takes over', async () => {
    const prefix = uniquePrefix('failover');
    const keys = keysOf(prefix, 30);
    const counts = new Map(keys.map((k) => [k, 0]));
    const round = async () => {
      const values = await Promise.all(keys.map((k) => redis.incr(k)));
      keys.forEach((k, i) => counts.set(k, values[i]));
    };
    await round();
    await round();
    const before = new Map(counts);
    const killedAt = Date.now();
    const port = await cluster.killMaster(0);
    let failedRounds = 0;
    // Rounds until one fully succeeds after the kill: the client follows the new slot owner by itself.
    await waitFor(
      'every key writable again after the failover',
      async () => {
        // The killed master's socket is closed at once: its slots answer again only from the promoted replica.
        try {
          await round();
          return true;
        } catch {
          failedRounds++;
          return false;
        }
      },
      30_000,
      100,
    );
    const resumedMs = Date.now() - killedAt;
    console.log(`cluster failover: master ${port} killed, every key writable again after ${resumedMs} ms (${failedRounds} failed rounds)`);
    await cluster.waitForFailover();
    await round();
    for (const k of keys) expect(counts.get(k)!, k).toBeGreaterThan(before.get(k)!);
    expect((await clusterState(redis))?.state).toBe('ok');
    const nodes = await redisNodes(redis, 2000);
    expect(nodes.find((n) => n.address === `127.0.0.1:${port}`)?.status).toMatch(/fail/);
    expect(nodes.filter((n) => n.role === 'master' && n.status === 'ok')).toHaveLength(3);
    expect(logs.join('')).toMatch(/redis error/);
    await deleteKeysWithPrefix(redis, prefix);
  }, 60_000);
});

describe('a Redis Cluster with a password', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 0, password: SECRET });
  }, 90_000);
  afterAll(() => cluster?.stop());

  it('sends the password to every node; a wrong one fails with the cause and without the password', async () => {
    const redis = createRedis({ url: cluster.url, name: 'detektr:test' });
    try {
      const prefix = uniquePrefix('auth');
      await Promise.all(keysOf(prefix, 50).map((k) => redis.set(k, 'v')));
      expect(await deleteKeysWithPrefix(redis, prefix)).toBe(50);
    } finally {
      await closeRedis(redis);
    }
    const wrongUrl = cluster.url.replace(encodeURIComponent(SECRET), 'not-the-password');
    const lines: string[] = [];
    const wrong = createRedis({
      url: wrongUrl,
      name: 'detektr:test',
      logger: createLogger({ component: 't', write: (l) => lines.push(l) }),
    });
    let seen: unknown;
    wrong.on('node error', (err) => (seen = err));
    try {
      const err = await redisReady(wrong, 5000, () => seen).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(connectionCause(err)).toMatch(/authentication failed|WRONGPASS/);
      expect(lines.join('')).toMatch(/WRONGPASS|invalid username-password/);
      expect(lines.join('') + connectionCause(err)).not.toContain('not-the-password');
    } finally {
      await closeRedis(wrong);
    }
  }, 30_000);
});

describe('Redis behind a Sentinel', () => {
  it('connects to the master the sentinel names, and to the new one after a failover', async () => {
    const s = await startRedisSentinel();
    const redis = createRedis({ url: s.url, name: 'detektr:test' });
    try {
      expect(redis).toBeInstanceOf(Redis);
      const key = `${uniquePrefix('sentinel')}n`;
      expect(await redis.incr(key)).toBe(1);
      expect(await redisNodes(redis)).toEqual([
        expect.objectContaining({ address: `127.0.0.1:${s.masterPort}`, role: 'master', status: 'ok' }),
      ]);
      await s.killMaster();
      const promoted = await s.waitForFailover(s.masterPort);
      expect(promoted).toBe(s.replicaPort);
      await waitFor('writes on the promoted master', async () => (await redis.incr(key)) >= 1, 30_000, 200);
      expect((await redisNodes(redis))[0].address).toBe(`127.0.0.1:${s.replicaPort}`);
      await redis.del(key);
    } finally {
      await closeRedis(redis);
      await s.stop();
    }
  }, 60_000);
});

describe('Redis over TLS with CA, client certificate and key files', () => {
  let files: TlsFiles;
  beforeAll(async () => {
    files = await makeTlsFiles();
  }, 60_000);
  afterAll(() => {
    if (files) rmSync(files.dir, { recursive: true, force: true });
  });

  it('connects with the right CA and client certificate; a wrong CA fails with a clear cause', async () => {
    const server = await startTlsRedis(files);
    const good = createRedis({ url: server.url, name: 'detektr:test', tls: { ca: files.ca, cert: files.cert, key: files.key } });
    const wrongCa = createRedis({ url: server.url, name: 'detektr:test', tls: { ca: files.otherCa, cert: files.cert, key: files.key } });
    let seen: unknown;
    wrongCa.on('error', (err) => (seen = err));
    try {
      expect(await good.ping()).toBe('PONG');
      await expectCertificateRejected(wrongCa, () => seen);
    } finally {
      await closeRedis(good, wrongCa);
      await server.stop();
    }
  }, 30_000);

  it('a TLS cluster (rediss+cluster://): the files reach every node; a wrong CA fails with a clear cause', async () => {
    const tlsCluster = await startRedisCluster({ masters: 3, replicasPerMaster: 0, tls: files });
    const tls = { ca: files.ca, cert: files.cert, key: files.key };
    const good = createRedis({ url: tlsCluster.url, name: 'detektr:test', tls });
    const wrongCa = createRedis({ url: tlsCluster.url, name: 'detektr:test', tls: { ...tls, ca: files.otherCa } });
    let seen: unknown;
    wrongCa.on('node error', (err) => (seen = err));
    try {
      expect(tlsCluster.url).toMatch(/^rediss\+cluster:\/\//);
      const prefix = uniquePrefix('tlscluster');
      await Promise.all(keysOf(prefix, 100).map((k) => good.set(k, 'v')));
      expect(await deleteKeysWithPrefix(good, prefix)).toBe(100);
      const nodes = await redisNodes(good);
      expect(nodes.map((n) => [n.role, n.status])).toEqual([
        ['master', 'ok'],
        ['master', 'ok'],
        ['master', 'ok'],
      ]);
      await expectCertificateRejected(wrongCa, () => seen);
    } finally {
      await closeRedis(good, wrongCa);
      await tlsCluster.stop();
    }
  }, 90_000);

  it('TLS behind a Sentinel (rediss+sentinel://): sentinel and master both over TLS with the files', async () => {
    const s = await startRedisSentinel({ tls: files });
    const redis = createRedis({ url: s.url, name: 'detektr:test', tls: { ca: files.ca, cert: files.cert, key: files.key } });
    try {
      expect(s.url).toMatch(/^rediss\+sentinel:\/\//);
      const key = `${uniquePrefix('tlssentinel')}n`;
      expect(await redis.incr(key)).toBe(1);
      expect((await redisNodes(redis))[0]).toMatchObject({ address: `127.0.0.1:${s.masterPort}`, status: 'ok' });
      await redis.del(key);
    } finally {
      await closeRedis(redis);
      await s.stop();
    }
  }, 60_000);
});

/** A connection whose CA does not know the server's certificate fails, and says so. */
async function expectCertificateRejected(redis: RedisClient, lastError: () => unknown): Promise<void> {
  const err = await redisReady(redis, 5000, lastError).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(connectionCause(err)).toMatch(/TLS certificate rejected|self.signed|unable to verify/i);
}
