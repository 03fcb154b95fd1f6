import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPool } from '../../src/store/pg.js';
import { runDetektr, spawnDetektr } from '../helpers/cli.js';
import { waitFor } from '../helpers/redis.js';

// No REDIS_URL, no DATABASE_URL: `detektr run` must bring its own backends.
const ENV = {
  REDIS_URL: undefined,
  DATABASE_URL: undefined,
  DETEKTR_METRICS_PORT: '0',
  DETEKTR_CONFIG: undefined,
  DETEKTR_DATA_DIR: undefined,
};

interface JourneyJson {
  frameId: string;
  state: string;
  events: { type: string }[];
  stages: { processorId: string; state: string }[];
}

describe('detektr run with embedded backends (no Redis, no PostgreSQL)', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'detektr-run-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('runs the whole pipeline, then trace find reads the journey from the data dir after it stopped', async () => {
    const dir = tempDir();
    const run = await runDetektr(['run', '--max-frames', '30', '--fps', '10', '--data-dir', dir], ENV, 50_000);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^published 30 frames from 1 camera\(s\)/m);
    const id = /last frame ([0-9A-Z]{26}) is completed/.exec(run.stdout)?.[1];
    expect(id, run.stdout).toBeDefined();
    const backends = run.stderr
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, string>)
      .find((l) => l.msg === 'backends');
    expect(backends?.redis).toMatch(/^embedded/);
    expect(backends?.postgres).toMatch(/^embedded \(PGlite/);
    expect(existsSync(join(dir, 'run.json'))).toBe(false);
    expect(existsSync(join(dir, 'pgdata'))).toBe(true);

    const found = await runDetektr(['trace', 'find', id!, '--json', '--data-dir', dir], ENV);
    expect(found.code, found.stderr).toBe(0);
    const journey = JSON.parse(found.stdout) as JourneyJson;
    expect(journey.frameId).toBe(id);
    expect(journey.state).toBe('completed');
    expect(journey.events.map((e) => e.type)).toContain('processing.completed');
    expect(journey.stages.length).toBeGreaterThanOrEqual(1);
    expect(journey.stages.every((s) => s.state === 'completed')).toBe(true);
  }, 90_000);

  it('trace find reads the journey WHILE run is running (through run.json); SIGTERM stops run with exit 0', async () => {
    const dir = tempDir();
    const run = spawnDetektr(['run', '--fps', '10', '--data-dir', dir], ENV);
    try {
      const info = await waitFor(
        'run.json',
        () => {
          try {
            return JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as { pid: number; redisUrl: string; databaseUrl: string };
          } catch {
            return undefined;
          }
        },
        30_000,
        100,
      );
      expect(info.pid).toBe(run.proc.pid);
      expect(info.redisUrl).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
      const pool = createPool(info.databaseUrl, { schema: 'detektr', max: 1 });
      let id: string;
      try {
        id = await waitFor(
          'a completed frame',
          async () => {
            const r = await pool.query<{ frame_id: string }>(
              "SELECT frame_id FROM frame_metadata WHERE state = 'completed' ORDER BY captured_at DESC LIMIT 1",
            );
            return r.rows[0]?.frame_id;
          },
          30_000,
          200,
        );
      } finally {
        await pool.end();
      }
      const found = await runDetektr(['trace', 'find', id, '--json', '--data-dir', dir], ENV);
      expect(found.code, found.stderr).toBe(0);
      expect((JSON.parse(found.stdout) as JourneyJson).state).toBe('completed');
      const table = await runDetektr(['trace', 'find', id, '--data-dir', dir], ENV);
      expect(table.code, table.stderr).toBe(0);
      expect(table.stdout).toMatch(new RegExp(`frame\\s+│ ${id}`));
      expect(run.proc.exitCode).toBeNull(); // still running
    } finally {
      const code = await run.stop(20_000);
      expect(code, run.stderr()).toBe(0);
    }
    expect(existsSync(join(dir, 'run.json'))).toBe(false);
    expect(run.stdout()).toMatch(/last frame [0-9A-Z]{26} is /);
  }, 90_000);

  it('trace find without DATABASE_URL and without embedded data says what to do (exit 1)', async () => {
    const dir = tempDir();
    const r = await runDetektr(['trace', 'find', '01M82NWZ9EJSS8746CWM2N40Q9', '--data-dir', dir], ENV);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no DATABASE_URL and no embedded data in .*: run `detektr run` first or set DATABASE_URL/);
  });
});
