/**
 * Worker thread entry: runs camera reader sessions (reader.ts), one at a time, with
 * blocking FFmpeg calls, and posts what it sees to the thread that started it
 * (ReaderThread in reader-thread.ts). A thread serves one camera across reconnects, so a
 * flaky camera does not pay for a new thread (and node-av's start-up) per attempt.
 *
 * Each session brings its own control words (Int32Array over a SharedArrayBuffer):
 * [0] non-zero asks the session to stop (checked between native calls; it also wakes the
 * pacing sleep); [1] non-zero retires the thread once the session has cleaned up.
 */
import { parentPort } from 'node:worker_threads';
import { runReader, type OpenInfo, type ReaderOptions, type ReaderStats, type SampledFrame } from './reader.js';
import { serializeError, type SerializedError } from './source-errors.js';

export interface StartSession {
  type: 'start';
  id: number;
  options: ReaderOptions;
  control: SharedArrayBuffer;
  progress: SharedArrayBuffer;
}

export type CameraWorkerMessage = { id: number } & (
  | { type: 'open'; info: OpenInfo }
  | { type: 'frame'; frame: SampledFrame }
  | { type: 'stats'; stats: ReaderStats }
  | { type: 'end' }
  | { type: 'error'; error: SerializedError }
);

export const CONTROL = { stop: 0, retire: 1, length: 2 } as const;

const port = parentPort;
if (port) {
  port.on('message', (m: StartSession) => {
    if (m.type !== 'start') return;
    const { id } = m;
    const ctrl = new Int32Array(m.control);
    const post = (msg: CameraWorkerMessage): void => port.postMessage(msg);
    try {
      runReader(m.options, {
        stopped: () => Atomics.load(ctrl, CONTROL.stop) !== 0,
        wait: (ms) => {
          Atomics.wait(ctrl, CONTROL.stop, 0, ms);
        },
        progress: new Float64Array(m.progress),
        onOpen: (info) => post({ id, type: 'open', info }),
        onFrame: (frame) => post({ id, type: 'frame', frame }),
        onStats: (stats) => post({ id, type: 'stats', stats }),
      });
      post({ id, type: 'end' });
    } catch (err) {
      post({ id, type: 'error', error: serializeError(err) });
    }
    // Retired while this session ran (it overran a deadline): nothing else will come.
    if (Atomics.load(ctrl, CONTROL.retire) !== 0) port.close();
  });
}
