import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetektr } from '../helpers/cli.js';
import { startPrivateRedis, type PrivateRedis } from '../helpers/private-redis.js';
import { TEST_DATABASE_URL } from '../helpers/pg.js';
import { REDIS_URL } from '../helpers/redis.js';

interface Report {
  status: string;
  checks: { check: string; status: string; detail: string }[];
}

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const s: Server = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** `detektr validate --json`: the redis and postgres checks' details. */
async function validateWith(redisUrl: string, databaseUrl: string) {
  const r = await runDetektr(['validate', '--json', '--redis-url', redisUrl, '--database-url', databaseUrl], {
    DETEKTR_CONFIG: undefined,
    OTEL_EXPORTER_OTLP_ENDPOINT: undefined,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined,
  });
  expect(r.code, r.stderr).toBe(1);
  const report = JSON.parse(r.stdout) as Report;
  const detail = (name: string) => report.checks.find((c) => c.check === name)?.detail ?? '';
  return { redis: detail('redis'), postgres: detail('schema') || detail('postgres'), all: r.stdout + r.stderr };
}

describe('detektr validate names the real cause of a failed connection (issue #12)', () => {
  let dir: string;
  let tls: Server;
  let tlsPort: number;
  let locked: PrivateRedis;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'detektr-tls-'));
    execFileSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ]);
    // A TLS server with a self-signed certificate: the client must refuse it before any Redis byte.
    tls = createTlsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (s) => s.end());
    tls.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    tlsPort = (tls.address() as { port: number }).port;
    locked = await startPrivateRedis({ password: 'right-horse-battery' });
  });

  afterAll(async () => {
    await new Promise<void>((r) => (tls ? tls.close(() => r()) : r()));
    await locked?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('connection refused (Redis and PostgreSQL), not "Command timed out"', async () => {
    const port = await closedPort();
    const r = await validateWith(`redis://127.0.0.1:${port}`, `postgres://postgres@127.0.0.1:${port}/test`);
    expect(r.redis).toBe(`connection refused (connect ECONNREFUSED 127.0.0.1:${port})`);
    expect(r.postgres).toBe(`connection refused (connect ECONNREFUSED 127.0.0.1:${port})`);
    expect(r.all).not.toContain('Command timed out');
  }, 60_000);

  it('a host that does not resolve: DNS', async () => {
    const r = await validateWith('redis://no-such-host.invalid:6379', 'postgres://postgres@no-such-host.invalid/test');
    expect(r.redis).toMatch(/^host not found: DNS lookup failed \(getaddrinfo (ENOTFOUND|EAI_AGAIN) no-such-host\.invalid\)$/);
    expect(r.postgres).toMatch(/^host not found: DNS lookup failed/);
  }, 60_000);

  it('a TLS certificate the client does not trust', async () => {
    const r = await validateWith(`rediss://127.0.0.1:${tlsPort}`, TEST_DATABASE_URL);
    expect(r.redis).toMatch(/^TLS certificate rejected: .*self-signed certificate.* \(DEPTH_ZERO_SELF_SIGNED_CERT\)$/);
  }, 60_000);

  it('authentication failures (wrong Redis password, unknown PostgreSQL role), with the password redacted', async () => {
    const wrong = locked.url.replace('right-horse-battery', 'wrong-horse-battery');
    const r = await validateWith(wrong, TEST_DATABASE_URL.replace('postgres@', 'no_such_role_x@'));
    expect(r.redis).toMatch(/^authentication failed: (WRONGPASS|NOAUTH)/);
    expect(r.postgres).toBe('authentication failed: role "no_such_role_x" does not exist');
    expect(r.all).not.toContain('wrong-horse-battery');
    // and the healthy shared Redis still passes its check
    const ok = await runDetektr(['validate', '--json', '--redis-url', REDIS_URL, '--database-url', TEST_DATABASE_URL], {
      DETEKTR_CONFIG: undefined,
    });
    expect((JSON.parse(ok.stdout) as Report).checks.find((c) => c.check === 'redis')?.status).toBe('ok');
  }, 60_000);
});
