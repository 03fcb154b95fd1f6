import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CONTROL, type CameraWorkerMessage, type StartSession } from './camera-worker.js';
import { PHASE, PROGRESS, type ReaderOptions } from './reader.js';

export interface ReaderSession {
  id: number;
  control: Int32Array;
  progress: Float64Array;
}

export type ReaderEvent = CameraWorkerMessage | { id: number; type: 'lost'; error: Error };
type Listener = (m: ReaderEvent) => void;

/** One worker and the session it runs. */
interface Slot {
  worker: Worker;
  /** The session the worker runs (its messages go to `listener`), until its end or error. */
  session?: { id: number; control: Int32Array; listener: Listener; released: boolean };
}

/**
 * A worker thread (camera-worker.ts) that runs one reader session at a time, reused
 * across sessions (a camera's reconnects). A session abandoned while the thread is stuck
 * inside FFmpeg (a deadline passed) leaves the thread busy: the next session gets a fresh
 * thread, and the stuck one retires by itself once its native call returns and it has
 * freed its context.
 */
export class ReaderThread {
  private slot?: Slot;
  private nextId = 1;
  private closed = false;

  /** Starts a session; `listener` gets its messages, and after release() only its stats. */
  start(options: ReaderOptions, listener: Listener): ReaderSession {
    if (this.closed) throw new Error('reader thread closed');
    if (this.slot?.session) this.retire();
    const slot = (this.slot ??= this.spawn());
    const id = this.nextId++;
    const control = new Int32Array(new SharedArrayBuffer(CONTROL.length * 4));
    const progress = new Float64Array(new SharedArrayBuffer(PROGRESS.length * 8));
    progress[PROGRESS.phase] = PHASE.starting;
    progress[PROGRESS.phaseSince] = Date.now();
    slot.session = { id, control, listener, released: false };
    slot.worker.ref();
    const msg: StartSession = {
      type: 'start',
      id,
      options,
      control: control.buffer as SharedArrayBuffer,
      progress: progress.buffer as SharedArrayBuffer,
    };
    slot.worker.postMessage(msg);
    return { id, control, progress };
  }

  /** Asks the session to stop; from now on only its stats are delivered. */
  release(session: ReaderSession): void {
    Atomics.store(session.control, CONTROL.stop, 1);
    Atomics.notify(session.control, CONTROL.stop);
    const slot = this.slot;
    if (slot?.session?.id === session.id) {
      slot.session.released = true;
      // A session still inside FFmpeg must not keep the process alive.
      slot.worker.unref();
    }
  }

  /** Ends the thread: now when idle, else right after its session has cleaned up. */
  close(): void {
    this.closed = true;
    this.retire();
  }

  private retire(): void {
    const slot = this.slot;
    if (!slot) return;
    this.slot = undefined;
    const s = slot.session;
    if (!s) {
      void slot.worker.terminate();
      return;
    }
    Atomics.store(s.control, CONTROL.retire, 1);
    Atomics.store(s.control, CONTROL.stop, 1);
    Atomics.notify(s.control, CONTROL.stop);
    slot.worker.unref();
    if (!s.released) {
      s.released = true;
      s.listener({ id: s.id, type: 'lost', error: new Error('reader thread retired') });
    }
  }

  private spawn(): Slot {
    const slot: Slot = { worker: startWorker() };
    slot.worker.on('message', (m: CameraWorkerMessage) => {
      const s = slot.session;
      if (!s || s.id !== m.id) return;
      if (!s.released || m.type === 'stats') s.listener(m);
      if (m.type === 'end' || m.type === 'error') {
        slot.session = undefined;
        slot.worker.unref();
      }
    });
    const lost = (error: Error) => {
      if (this.slot === slot) this.slot = undefined;
      const s = slot.session;
      slot.session = undefined;
      if (s && !s.released) s.listener({ id: s.id, type: 'lost', error });
    };
    slot.worker.on('error', (err) => lost(err));
    slot.worker.on('exit', (code) => lost(new Error(`reader thread exited (code ${code})`)));
    slot.worker.unref();
    return slot;
  }
}

/**
 * The compiled worker next to this file; under tsx or vitest (this file is .ts) the .ts
 * worker, loaded through tsx's loader registered inside the thread.
 */
function startWorker(): Worker {
  const self = import.meta.url;
  // A worker inherits the process's Node flags; --input-type (node -e) would stop it loading.
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
  if (!self.endsWith('.ts')) return new Worker(new URL('./camera-worker.js', self), { execArgv });
  const api = createRequire(self).resolve('tsx/esm/api');
  const tsx = pathToFileURL(api.replace(/\.cjs$/, '.mjs')).href;
  const entry = new URL('./camera-worker.ts', self).href;
  const boot =
    `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })` +
    '.catch((e) => setImmediate(() => { throw e; }));';
  return new Worker(boot, { eval: true, execArgv });
}
