import './node-av-polyfill.js';
import { AV_LOG_ERROR, AV_LOG_WARNING } from 'node-av/constants';
import { Log } from 'node-av/lib';
import type { Logger } from '../telemetry/logger.js';

/**
 * Sends FFmpeg's own messages (process-wide, from every reader thread) through the JSON
 * logger, which redacts urls, instead of straight to stderr. Errors become warn lines,
 * warnings debug lines; a burst (a lossy link makes the decoder complain per frame) is
 * cut to `burst` lines per `windowMs`, then one line says how many were left out.
 */
export function routeFfmpegLogs(logger: Logger, opts: { burst?: number; windowMs?: number } = {}): () => void {
  const burst = opts.burst ?? 20;
  const windowMs = opts.windowMs ?? 10_000;
  let windowStart = Date.now();
  let count = 0;
  let suppressed = 0;
  Log.setCallback(
    (level, message) => {
      const now = Date.now();
      if (now - windowStart >= windowMs) {
        if (suppressed) logger.warn('ffmpeg messages left out', { count: suppressed, window_ms: windowMs });
        windowStart = now;
        count = 0;
        suppressed = 0;
      }
      if (++count > burst) {
        suppressed++;
        return;
      }
      const text = message.trim();
      if (!text) return;
      if (level <= AV_LOG_ERROR) logger.warn('ffmpeg', { ffmpeg: text });
      else logger.debug('ffmpeg', { ffmpeg: text });
    },
    { maxLevel: AV_LOG_WARNING },
  );
  return () => Log.resetCallback();
}
