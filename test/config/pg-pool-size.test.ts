import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { createPool } from '../../src/store/pg.js';
import { runDetektr } from '../helpers/cli.js';
import { TEST_DATABASE_URL } from '../helpers/pg.js';
import { waitFor } from '../helpers/redis.js';

describe('pgPoolSize (DETEKTR_PG_POOL_SIZE, --pg-pool-size)', () => {
  it('caps the connections a pool built from the config opens, as run, store and migrate build theirs', async () => {
    const { config } = loadConfig({ env: { DETEKTR_PG_POOL_SIZE: '3' }, configPath: '/dev/null' });
    const app = `detektr-pool-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const pool = createPool(TEST_DATABASE_URL, { max: config.pgPoolSize, applicationName: app });
    const watcher = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await watcher.connect();
    const connections = async () =>
      Number(
        (await watcher.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [app])).rows[0].n,
      );
    try {
      // Eight slow queries at once: the pool runs three, the others wait for a free connection.
      const busy = Array.from({ length: 8 }, () => pool.query('SELECT pg_sleep(0.5)'));
      await waitFor('the pool to open its connections', async () => (await connections()) >= 3);
      expect(await connections()).toBe(3);
      expect(pool.totalCount).toBe(3);
      expect(pool.waitingCount).toBeGreaterThan(0);
      await Promise.all(busy);
    } finally {
      await watcher.end();
      await pool.end();
    }
  });

  it('is a flag of run, store and migrate, validated (1-100) and shown by config show', async () => {
    const shown = await runDetektr(['config', 'show', '--json', '--pg-pool-size', '7'], { DETEKTR_CONFIG: undefined });
    expect(shown.code, shown.stderr).toBe(0);
    expect((JSON.parse(shown.stdout) as { values: Record<string, { value: unknown }> }).values.pgPoolSize).toMatchObject({ value: 7 });
    const bad = await runDetektr(['migrate', '--pg-pool-size', '0'], { DETEKTR_CONFIG: undefined });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--pg-pool-size: "0" is out of range \(between 1 and 100\)/);
    for (const cmd of ['run', 'store', 'migrate']) {
      expect((await runDetektr([cmd, '--help'], {})).stdout, cmd).toMatch(/--pg-pool-size <n>/);
    }
  }, 60_000);
});
