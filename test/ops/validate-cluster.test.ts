import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetektr } from '../helpers/cli.js';
import { TEST_DATABASE_URL } from '../helpers/pg.js';
import { startRedisCluster, type TestCluster } from '../helpers/redis-cluster.js';
import { uniquePrefix } from '../helpers/redis.js';

interface Report {
  checks: { check: string; status: string; detail: string }[];
}

describe('detektr validate and status against a Redis Cluster', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 0, password: 'cluster-validate-pw' });
  }, 90_000);
  afterAll(() => cluster?.stop());

  it('lists the cluster state and every node with its role, slots and version; the password nowhere', async () => {
    const r = await runDetektr(
      ['validate', '--json', '--redis-url', cluster.url, '--database-url', TEST_DATABASE_URL, '--prefix', uniquePrefix('vcluster')],
      {
        DETEKTR_CONFIG: undefined,
        REDIS_URL: undefined,
        OTEL_EXPORTER_OTLP_ENDPOINT: undefined,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined,
      },
    );
    const report = JSON.parse(r.stdout) as Report;
    const byName = (name: string) => report.checks.find((c) => c.check === name);
    expect(byName('redis')?.status, r.stdout).toBe('ok');
    expect(byName('redis cluster')).toEqual({
      check: 'redis cluster',
      status: 'ok',
      detail: 'cluster_state ok, 16384 of 16384 slots assigned, 3 nodes',
    });
    for (const node of cluster.nodes) {
      expect(byName(`redis node 127.0.0.1:${node.port}`)).toMatchObject({
        status: 'ok',
        detail: expect.stringMatching(/^master, slots \d+-\d+, version \d+\.\d+/) as unknown,
      });
    }
    expect(r.stdout + r.stderr).not.toContain('cluster-validate-pw');
  }, 60_000);

  it('status --json has a nodes section: the cluster state and each node', async () => {
    const r = await runDetektr(
      ['status', '--json', '--redis-url', cluster.url, '--database-url', TEST_DATABASE_URL, '--prefix', uniquePrefix('scluster')],
      { DETEKTR_CONFIG: undefined, REDIS_URL: undefined },
    );
    expect(r.code, r.stderr).toBe(0);
    const snap = JSON.parse(r.stdout) as { cluster?: { state: string; nodes: { address: string; role: string; status: string }[] } };
    expect(snap.cluster?.state).toBe('ok');
    expect(snap.cluster?.nodes.map((n) => n.address).sort()).toEqual(cluster.nodes.map((n) => `127.0.0.1:${n.port}`).sort());
    expect(snap.cluster?.nodes.every((n) => n.role === 'master' && n.status === 'ok')).toBe(true);
    expect(r.stdout + r.stderr).not.toContain('cluster-validate-pw');
  }, 60_000);
});
