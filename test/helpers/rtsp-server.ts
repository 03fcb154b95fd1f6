import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const RTSP_SERVER_SCRIPT = fileURLToPath(new URL('../../scripts/rtsp-server.py', import.meta.url));
/** Debian's python has `gi`; another python first on PATH may not. */
const PYTHON = process.env.DETEKTR_TEST_PYTHON ?? '/usr/bin/python3';

export interface RtspServerOptions {
  port?: number;
  user?: string;
  password?: string;
  codec?: 'h264' | 'h265';
  /** videotestsrc pattern: smpte (still), black, ball, snow... */
  pattern?: string;
  /** scroll the pattern this many pixels per frame (a moving picture) */
  speed?: number;
  size?: string;
  fps?: number;
  /** x264/x265 speed preset (default ultrafast) and bitrate in kbit/s (default 2048) */
  preset?: string;
  bitrate?: number;
}

export interface RtspServer {
  port: number;
  /** rtsp://127.0.0.1:PORT/cam, without credentials */
  url: string;
  /** the url with user:password@, when the server asks for them */
  authUrl: string;
  readonly proc: ChildProcess;
  /** SIGKILL: the camera dies; connections drop at once. */
  kill(): Promise<void>;
  /** Starts it again on the same port with the same options. */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is sent or answered. */
  pause(): void;
  resume(): void;
  /** Kills it for good (afterAll). */
  close(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (the kernel picks one; a race with another process is possible but rare). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const address = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

function launch(port: number, o: RtspServerOptions): Promise<ChildProcess> {
  const args = [RTSP_SERVER_SCRIPT, String(port), '--size', o.size ?? '320x240', '--fps', String(o.fps ?? 25)];
  if (o.codec) args.push('--codec', o.codec);
  if (o.pattern) args.push('--pattern', o.pattern);
  if (o.speed) args.push('--speed', String(o.speed));
  if (o.preset) args.push('--preset', o.preset);
  if (o.bitrate) args.push('--bitrate', String(o.bitrate));
  if (o.user) args.push('--user', o.user, '--password', o.password ?? '');
  const proc = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`RTSP server on port ${port} did not start in 15 s: ${err}`));
    }, 15_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY ')) {
        clearTimeout(timer);
        resolve(proc);
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`RTSP server on port ${port} exited (${code}) before READY: ${err}`));
    });
  });
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

/** Starts scripts/rtsp-server.py (GStreamer's RTSP server) on a free port; resolves once it listens. */
export async function startRtspServer(o: RtspServerOptions = {}): Promise<RtspServer> {
  let port = o.port ?? (await freePort());
  let proc: ChildProcess | undefined;
  for (let attempt = 0; !proc; attempt++) {
    try {
      proc = await launch(port, o);
    } catch (err) {
      // The port was taken between freePort() and the bind: take another.
      if (attempt >= 2 || o.port) throw err;
      port = await freePort();
    }
  }
  const url = `rtsp://127.0.0.1:${port}/cam`;
  const server: RtspServer = {
    port,
    url,
    authUrl: o.user ? `rtsp://${o.user}:${o.password ?? ''}@127.0.0.1:${port}/cam` : url,
    get proc() {
      return proc!;
    },
    async kill() {
      proc!.kill('SIGCONT');
      proc!.kill('SIGKILL');
      await exited(proc!);
    },
    async restart() {
      await server.kill();
      // The old listening socket is gone with the process; a few retries cover a slow release.
      for (let attempt = 0; ; attempt++) {
        try {
          proc = await launch(port, o);
          return;
        } catch (err) {
          if (attempt >= 5) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    },
    pause: () => void proc!.kill('SIGSTOP'),
    resume: () => void proc!.kill('SIGCONT'),
    close: () => server.kill(),
  };
  return server;
}
