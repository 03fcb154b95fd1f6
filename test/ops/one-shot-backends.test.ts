import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runDetektr, spawnDetektr } from '../helpers/cli.js';
import { uniqueSchema } from '../helpers/pg.js';
import { uniquePrefix, waitFor } from '../helpers/redis.js';

// No URL anywhere: `run` starts embedded backends, the one-shot commands must find them
// (a prefix and schema of their own, so the Redis and PostgreSQL running here cannot answer instead).
const ENV = {
  REDIS_URL: undefined,
  DATABASE_URL: undefined,
  DETEKTR_METRICS_PORT: '0',
  DETEKTR_CONFIG: undefined,
  DETEKTR_DATA_DIR: undefined,
  DETEKTR_PREFIX: uniquePrefix('oneshot'),
  DETEKTR_DB_SCHEMA: uniqueSchema('oneshot'),
};

interface Check {
  check: string;
  status: string;
  detail: string;
}

describe('status, validate and loadtest find the backends of a running detektr run (as trace does)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'detektr-oneshot-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads run.json in --data-dir: status sees its camera and processors, validate its schema, loadtest gets frames completed', async () => {
    const run = spawnDetektr(['run', '--fps', '5', '--processor', 'sample', '--data-dir', dir], ENV);
    try {
      await waitFor(
        'run.json',
        () => {
          try {
            return JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as { pid: number };
          } catch {
            return undefined;
          }
        },
        60_000,
        100,
      );
      // A frame stored says the whole pipeline is up.
      await waitFor(
        'a frame stored',
        async () => {
          const s = await runDetektr(['status', '--json', '--data-dir', dir], ENV);
          if (s.code !== 0) return undefined;
          const snap = JSON.parse(s.stdout) as { cameras: { cameraId: string }[]; processors: { id: string; live: boolean }[] };
          return snap.cameras.some((c) => c.cameraId === 'demo') && snap.processors.some((p) => p.id === 'sample' && p.live)
            ? snap
            : undefined;
        },
        60_000,
        500,
      );

      const v = await runDetektr(['validate', '--json', '--data-dir', dir], ENV, 60_000);
      const report = JSON.parse(v.stdout) as { checks: Check[] };
      const check = (name: string) => report.checks.find((c) => c.check === name);
      expect(check('redis')?.status, v.stdout).toBe('ok');
      expect(check('schema')?.status, v.stdout).toBe('ok');
      expect(check('camera demo')?.status, v.stdout).toBe('ok');

      const lt = await runDetektr(
        [
          'loadtest',
          '--json',
          '--data-dir',
          dir,
          '--cameras',
          '1',
          '--fps',
          '5',
          '--duration',
          '2s',
          '--payload-kb',
          '1',
          '--max-p95',
          '60000',
        ],
        ENV,
        90_000,
      );
      const r = JSON.parse(lt.stdout) as { sent: number; completed: number; sendErrors: number };
      expect(r.sent, lt.stderr).toBeGreaterThan(0);
      expect(r.sendErrors).toBe(0);
      expect(r.completed, lt.stdout).toBe(r.sent);
    } finally {
      expect(await run.stop(20_000), run.stderr()).toBe(0);
    }
  }, 240_000);
});
