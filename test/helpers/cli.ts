import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './redis.js';

export const BIN = fileURLToPath(new URL('../../bin/detektr', import.meta.url));

export interface Spawned {
  proc: ChildProcess;
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<number | null>;
}

/**
 * Starts `detektr <args>` as a separate process, as a user would. Its HTTP server takes a
 * port the kernel picks (DETEKTR_METRICS_PORT=0) unless `env` or `args` say otherwise: the
 * default ports (9100-9104) collide when two runs share a host. listeningPort() tells it.
 */
export function spawnDetektr(args: string[], env: NodeJS.ProcessEnv): Spawned {
  const proc = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, DETEKTR_METRICS_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return {
    proc,
    exited,
    stdout: () => out,
    stderr: () => err,
    async stop(graceMs = 10_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** The port a spawned worker's HTTP server listens on, from its `listening` log line (log level info or lower). */
export async function listeningPort(p: Spawned, what = 'the worker', timeoutMs = 60_000): Promise<number> {
  const line = await waitFor(
    `${what} listening`,
    () => {
      if (p.proc.exitCode !== null) throw new Error(`${what} exited (${p.proc.exitCode}): ${p.stderr().slice(-2000)}`);
      return p
        .stderr()
        .split('\n')
        .find((l) => l.includes('"msg":"listening"'));
    },
    timeoutMs,
  );
  return (JSON.parse(line) as { port: number }).port;
}

/** Runs a one-shot `detektr` command to completion. */
export async function runDetektr(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawnDetektr(args, env);
  const timer = setTimeout(() => p.proc.kill('SIGKILL'), timeoutMs);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}
