import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { trace } from '@opentelemetry/api';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCameraEvent, encodeEvent } from '../../src/bus/event-codec.js';
import type { CameraEvent } from '../../src/domain/camera-events.js';
import type { LifecycleEvent } from '../../src/domain/events.js';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';
import { StoreService } from '../../src/store/store-service.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { eventStream } from '../../bench/lib/event-stream.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { testRedis, waitFor, type TestRedis } from '../helpers/redis.js';

/**
 * A TCP proxy in front of the test PostgreSQL that the test can take away and bring back,
 * so the store sees the database vanish (connections cut, new ones refused) without the
 * machine's PostgreSQL server being touched.
 */
class PgProxy {
  private server?: Server;
  private sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async up(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Refuse new connections and cut the open ones. */
  async down(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server?.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
    this.server = undefined;
  }

  get url(): string {
    const u = new URL(TEST_DATABASE_URL);
    u.host = `127.0.0.1:${this.port}`;
    return u.toString();
  }
}

const logger = createLogger({ component: 'store-test', level: 'error' });
const tracer = trace.getTracer('store-test');

function publish(t: TestRedis, events: Array<LifecycleEvent | CameraEvent>): Promise<unknown> {
  const tx = t.redis.pipeline();
  for (const e of events) {
    const fields = 'frameId' in e ? encodeEvent(e) : encodeCameraEvent(e);
    tx.xadd(t.keys.events, '*', ...fields);
  }
  return tx.exec();
}

async function counts(pool: pg.Pool) {
  const { rows } = await pool.query<{ events: number; frames: number; finished: number; cameras: number }>(
    `SELECT (SELECT count(*)::int FROM frame_events) AS events, (SELECT count(*)::int FROM frame_metadata) AS frames,
            (SELECT count(*)::int FROM frame_metadata WHERE state IN ('completed', 'failed', 'dropped')) AS finished,
            (SELECT count(*)::int FROM camera_events) AS cameras`,
  );
  return rows[0];
}

describe('StoreService (real Redis + PostgreSQL)', () => {
  const schema = uniqueSchema('store');
  let t: TestRedis;
  let admin: pg.Pool;
  const proxy = new PgProxy({ host: new URL(TEST_DATABASE_URL).hostname, port: Number(new URL(TEST_DATABASE_URL).port || 5432) });
  let storePool: pg.Pool;
  let store: StoreService;
  let running: Promise<void>;
  const metrics = createMetrics('store-test');
  const appName = `detektr-store-test-${process.pid}`;
  const t0 = Date.now() - 10 * 60_000;
  const all = eventStream({ frames: 600, cameras: 3, fps: 10, t0, seed: 7 });
  const camera = (i: number, type: CameraEvent['type'], reason?: string): CameraEvent => ({
    eventId: `01JCAMERA${String(i).padStart(17, '0')}`,
    type,
    cameraId: 'cam01',
    at: t0 + i * 1000,
    source: 'capture',
    ...(reason ? { reason } : {}),
  });

  beforeAll(async () => {
    t = await testRedis('store');
    admin = createPool(TEST_DATABASE_URL, { schema, max: 2 });
    await migrate({ pool: admin, schema });
    await proxy.up();
    storePool = createPool(proxy.url, { schema, max: 4, connectionTimeoutMs: 1000, applicationName: appName });
    store = new StoreService({
      redis: t.redis,
      blocking: [t.blocking],
      shards: t.shards,
      pool: storePool,
      tracer,
      metrics,
      logger,
      batchSize: 200,
      blockMs: 100,
      claimIdleMs: 60_000,
      maxDeliveries: 5,
    });
    running = store.run();
  });

  afterAll(async () => {
    await store?.close();
    await running;
    await storePool?.end().catch(() => {});
    await proxy.down().catch(() => {});
    await admin?.end();
    await t?.cleanup();
    await dropSchema(schema);
  });

  it('projects frame events and stores camera events from the same stream', async () => {
    const first = all.slice(0, 800);
    await publish(t, [...first, camera(1, 'camera.offline', 'timeout'), camera(5, 'camera.online')]);
    await waitFor(
      'the first events stored',
      async () => (await counts(admin)).events === first.length && (await counts(admin)).cameras === 2,
    );
    const { rows } = await admin.query('SELECT type, reason FROM camera_events ORDER BY at');
    expect(rows).toEqual([
      { type: 'camera.offline', reason: 'timeout' },
      { type: 'camera.online', reason: null },
    ]);
  });

  it('loses nothing while PostgreSQL is away, and catches up when it is back', async () => {
    await proxy.down();
    const middle = all.slice(800, 2000);
    // Camera events replayed (same ids) must not be stored twice.
    await publish(t, [...middle, camera(1, 'camera.offline', 'timeout'), camera(9, 'camera.frozen', 'same picture for 10s')]);
    // Give the store time to fail a few times (connection refused, then backoff).
    await waitFor('the store to notice', () => store.failures >= 2, 15_000, 50);
    await new Promise((r) => setTimeout(r, 1500)); // an outage of a couple of seconds, retried with backoff
    const [pending] = (await t.redis.xpending(t.keys.events, 'store')) as [number];
    expect(pending).toBeGreaterThan(0);
    expect((await counts(admin)).events).toBe(800);

    await proxy.up();
    // Lifecycle and camera events of a batch commit separately: one may land a retry later.
    await waitFor(
      'the store to catch up',
      async () => {
        const n = await counts(admin);
        return n.events === 2000 && n.cameras === 3;
      },
      30_000,
      100,
    );
    const c = await counts(admin);
    expect(c).toMatchObject({ events: 2000, cameras: 3 });
    await waitFor('every entry acked', async () => ((await t.redis.xpending(t.keys.events, 'store')) as [number])[0] === 0, 10_000);
    expect(store.failures).toBe(0);
    const errors = (await metrics.registry.getSingleMetric('detektr_store_errors_total')!.get()).values[0].value;
    expect(errors).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('survives its connections being terminated mid-stream (pg_terminate_backend)', async () => {
    const rest = all.slice(2000);
    const half = Math.floor(rest.length / 2);
    await publish(t, rest.slice(0, half));
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [appName]);
    await publish(t, rest.slice(half));
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [appName]);
    await waitFor('every event stored', async () => (await counts(admin)).events === all.length, 30_000, 100);
    await waitFor('every entry acked', async () => ((await t.redis.xpending(t.keys.events, 'store')) as [number])[0] === 0, 10_000);

    // Exactly once, whatever was retried: every frame finished, and the projection equals
    // a fresh projection of the stored events.
    const c = await counts(admin);
    expect(c.frames).toBe(600);
    expect(c.finished).toBe(600);
    const { rows } = await admin.query<{ dup: number }>(
      'SELECT count(*)::int AS dup FROM (SELECT event_id FROM frame_events GROUP BY event_id HAVING count(*) > 1) d',
    );
    expect(rows[0].dup).toBe(0);
    expect(await t.redis.xlen(t.keys.deadLetter)).toBe(0);
  }, 60_000);

  it('dead-letters an entry the schema would reject instead of retrying its batch forever', async () => {
    const good = eventStream({ frames: 2, t0: t0 + 60_000, seed: 99 });
    const fields = encodeEvent(good[0]);
    const bad = fields.map((v, i) => (i > 0 && fields[i - 1] === 'frame_id' ? 'not-a-ulid' : v));
    await t.redis.xadd(t.keys.events, '*', ...bad);
    await publish(t, good);
    await waitFor('the good events stored', async () => (await counts(admin)).events === all.length + good.length, 10_000);
    await waitFor('the bad entry dead-lettered', async () => (await t.redis.xlen(t.keys.deadLetter)) === 1, 10_000);
  });
});
