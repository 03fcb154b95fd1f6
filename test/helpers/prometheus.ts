import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Spawned } from './cli.js';
import { waitFor } from './redis.js';
import { freePort } from './rtsp-server.js';

/** The metrics port a worker started with DETEKTR_METRICS_PORT=0 logged ("listening"). */
export async function metricsPort(worker: Spawned, timeoutMs = 60_000): Promise<number> {
  return waitFor(
    'the worker to log its metrics port',
    () => {
      if (worker.proc.exitCode !== null) throw new Error(`worker exited ${worker.proc.exitCode}: ${worker.stderr().slice(-2000)}`);
      const m = /"msg":"listening".*?"port":(\d+)/.exec(worker.stderr());
      return m ? Number(m[1]) : undefined;
    },
    timeoutMs,
    100,
  );
}

export async function scrape(port: number, accept?: string): Promise<{ contentType: string; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: accept ? { accept } : {} });
  if (res.status !== 200) throw new Error(`/metrics on ${port} answered ${res.status}`);
  return { contentType: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** `promtool check metrics` on exposition text: its exit status and what it printed. */
export function promtoolCheckMetrics(text: string): { status: number | null; output: string } {
  const r = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

export interface PrometheusServer {
  url: string;
  /** GET /api/v1/<path>: the `data` of a successful answer. */
  api<T>(path: string): Promise<T>;
  close(): Promise<void>;
}

export interface ScrapeJob {
  job: string;
  ports: number[];
}

/**
 * Debian's Prometheus on a free loopback port with its own temp storage, scraping `jobs`
 * every second and evaluating `ruleFile` every second; exemplar storage on, so it asks
 * the targets for OpenMetrics.
 */
export async function startPrometheus(jobs: ScrapeJob[], ruleFile: string): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'detektr-prometheus-'));
  const config = [
    'global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }',
    `rule_files: [${JSON.stringify(ruleFile)}]`,
    'scrape_configs:',
    ...jobs.map((j) => `  - { job_name: ${j.job}, static_configs: [{ targets: [${j.ports.map((p) => `'127.0.0.1:${p}'`).join(', ')}] }] }`),
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const port = await freePort();
  const proc: ChildProcess = spawn(
    '/usr/bin/prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--enable-feature=exemplar-storage',
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const server: PrometheusServer = {
    url,
    async api<T>(path: string): Promise<T> {
      const res = await fetch(`${url}/api/v1/${path}`);
      const body = (await res.json()) as { status: string; data: T; error?: string };
      if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.error}`);
      return body.data;
    },
    async close() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await waitFor(
    'prometheus to be ready',
    async () => {
      if (proc.exitCode !== null) throw new Error(`prometheus exited ${proc.exitCode}: ${log.slice(-2000)}`);
      return (await fetch(`${url}/-/ready`)).ok;
    },
    30_000,
    200,
  ).catch(async (err: unknown) => {
    await server.close();
    throw err;
  });
  return server;
}
