import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../commands/index.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { writeBatch } from '../../src/store/event-writer.js';
import { createPool } from '../../src/store/pg.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';

/**
 * The real CLI entry (commands/index.ts main: parsing, config, exit codes), run in this
 * process with process.exit and stdout/stderr captured, so it needs no build.
 */
async function detektr(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  let code = -1;
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  });
  const exit = vi.spyOn(process, 'exit').mockImplementation(((c?: number) => {
    code = c ?? 0;
  }) as never);
  const exitCode = process.exitCode;
  try {
    await main([
      'node',
      'detektr',
      ...args,
      '--database-url',
      TEST_DATABASE_URL,
      ...(args.includes('--db-schema') ? [] : ['--db-schema', schema]),
    ]);
  } finally {
    out.mockRestore();
    err.mockRestore();
    exit.mockRestore();
    process.exitCode = exitCode;
  }
  return { code, stdout, stderr };
}

const schema = uniqueSchema('cli');
let pool: pg.Pool;
let jaeger: Server;
let jaegerUrl: string;
const T = Date.now() - 10 * 60_000;
const TRACE = 'ab'.repeat(16);
const frameId = ulid(T);

beforeAll(async () => {
  jaeger = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const span = {
      traceId: TRACE,
      spanId: '1'.repeat(16),
      name: 'capture_frame',
      kind: 1,
      startTimeUnixNano: `${T}000000`,
      endTimeUnixNano: `${T + 3}000000`,
    };
    res.end(
      JSON.stringify({
        result: {
          resourceSpans: [
            {
              resource: { attributes: [{ key: 'service.name', value: { stringValue: 'detektr-capture' } }] },
              scopeSpans: [{ spans: [span] }],
            },
          ],
        },
      }),
    );
  });
  await new Promise<void>((r) => jaeger.listen(0, '127.0.0.1', () => r()));
  jaegerUrl = `http://127.0.0.1:${(jaeger.address() as AddressInfo).port}`;
  pool = createPool(TEST_DATABASE_URL, { schema });
});

afterAll(async () => {
  await pool.end();
  await new Promise((r) => jaeger.close(r));
  await dropSchema(schema);
});

describe('detektr migrate / maintain / trace (CLI)', () => {
  it('migrate --dry-run lists the migrations, migrate applies them', async () => {
    const dry = await detektr('migrate', '--dry-run', '--json');
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout).pending.map((m: { version: number }) => m.version)).toEqual([1, 2]);
    const run = await detektr('migrate', '--partition-interval', '1d');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('applied 002_partitioned_storage');
    expect((await detektr('migrate', '--partition-interval', '90m')).code).toBe(2);

    const p = { processorId: 'motion-1', capability: 'motion' };
    const base = { frameId, cameraId: 'front', traceId: TRACE };
    const events: LifecycleEvent[] = [
      { ...base, eventId: ulid(T), type: 'frame.captured', at: T, source: 'capture' },
      { ...base, eventId: ulid(T + 2), type: 'frame.queued', at: T + 2, source: 'buffer', ...p },
      { ...base, eventId: ulid(T + 5), type: 'processing.started', at: T + 5, source: 'process', attempt: 1, ...p },
      {
        ...base,
        eventId: ulid(T + 800),
        type: 'processing.failed',
        at: T + 800,
        source: 'process',
        attempt: 1,
        durationMs: 795,
        error: 'TimeoutError: frame timeout',
        ...p,
      },
    ];
    await writeBatch(pool, events, [
      { eventId: ulid(T + 3000), type: 'camera.offline', cameraId: 'front', at: T + 3000, source: 'capture', reason: 'timeout' },
    ]);
  });

  it('trace find: the journey as JSON with camera events, links and spans; a table otherwise', async () => {
    const r = await detektr('trace', 'find', frameId.toLowerCase(), '--json', '--spans', '--trace-ui-url', jaegerUrl);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({
      frameId,
      state: 'failed',
      traceId: TRACE,
      totalMs: 800,
      sampled: true,
      traceUrl: `${jaegerUrl}/trace/${TRACE}`,
    });
    expect(j.cameraEvents).toEqual([expect.objectContaining({ type: 'camera.offline', offsetMs: 3000, reason: 'timeout' })]);
    expect(j.spans).toEqual([expect.objectContaining({ name: 'capture_frame', service: 'detektr-capture', durationMs: 3 })]);

    const table = await detektr('trace', 'find', frameId, '--trace-backend', 'tempo', '--trace-ui-url', 'https://grafana.test');
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('camera.offline');
    expect(table.stdout).toContain('https://grafana.test/explore?');
    expect(table.stdout).toContain('TimeoutError: frame timeout');

    const down = await detektr('trace', 'find', frameId, '--json', '--spans', '--trace-api-url', 'http://127.0.0.1:1');
    expect(down.code).toBe(0);
    expect(JSON.parse(down.stdout).spansError).toMatch(/cannot be reached/);
  });

  it('exit 1 for an unknown frame, 2 for bad input', async () => {
    const unknown = await detektr('trace', 'find', ulid());
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/not found/);
    const unmigrated = await detektr('trace', 'find', ulid(), '--db-schema', 'never_migrated');
    expect(unmigrated.code).toBe(1);
    expect(unmigrated.stderr).toMatch(/schema "never_migrated" has no detektr tables: run `detektr migrate`/);
    for (const args of [
      ['trace', 'find', 'frame-42'],
      ['trace', 'slow', '--threshold', 'fast'],
      ['trace', 'search', '--state', 'lost'],
      ['trace', 'failures', '--since', 'yesterday'],
      ['trace', 'search', '--limit', '0'],
      ['trace', 'find', frameId, '--trace-backend', 'zipkin'],
      ['maintain', '--retention', '10m'],
    ]) {
      const r = await detektr(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
    }
  });

  it('trace slow | failures | search | camera answer as JSON and as tables', async () => {
    const slow = await detektr('trace', 'slow', '--threshold', '500ms', '--since', '1h', '--json');
    expect(slow.code, slow.stderr).toBe(0);
    expect(JSON.parse(slow.stdout)).toMatchObject({ slow: 1, frames: [{ frameId, totalMs: 800 }] });
    const failures = await detektr('trace', 'failures', '--since', '24h', '--json');
    expect(JSON.parse(failures.stdout).groups).toEqual([
      expect.objectContaining({ processorId: 'motion-1', errorType: 'TimeoutError', count: 1 }),
    ]);
    const search = await detektr('trace', 'search', '--camera', 'front', '--state', 'failed', '--since', '2h', '--limit', '50');
    expect(search.code).toBe(0);
    expect(search.stdout).toContain(frameId);
    const camera = await detektr('trace', 'camera', 'front', '--since', '1h', '--json');
    expect(JSON.parse(camera.stdout).offline).toEqual([expect.objectContaining({ cameraId: 'front', to: null, reason: 'timeout' })]);
    const none = await detektr('trace', 'search', '--camera', 'nobody');
    expect(none).toMatchObject({ code: 0 });
    expect(none.stdout).toContain('no frames match');
  });

  it('maintain --dry-run reports without changing anything; maintain applies', async () => {
    const dry = await detektr('maintain', '--dry-run', '--retention', '30d', '--json');
    expect(dry.code, dry.stderr).toBe(0);
    const r = JSON.parse(dry.stdout);
    expect(r).toMatchObject({ storage: 'native', dryRun: true, schema });
    expect(r.created.length).toBeGreaterThan(0);
    const real = await detektr('maintain', '--ahead', '2d');
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toMatch(/retention: none/);
  });
});
