import type { RedisClient } from '../bus/redis.js';
import { thumbnailKey } from '../bus/keys.js';
import { PayloadExpiredError } from '../domain/errors.js';
import type { FrameMessage } from '../domain/frame.js';
import type { Logger } from '../telemetry/logger.js';
import type { GrayThumbnail, Processor, ProcessorOptions, ProcessorResult } from './processor.js';
import { thumbnailOf } from './thumbnail.js';

/** The frame took longer than the frame timeout: a processing failure. */
export class FrameTimeoutError extends Error {}
/** The worker is stopping: not the frame's fault, it is handed back. */
export class ShutdownError extends Error {}

export interface RunFrameOptions {
  processor: Processor;
  redis: RedisClient;
  id: string;
  logger: Logger;
  frameTimeoutMs: number;
  options?: ProcessorOptions;
}

/**
 * Loads what the processor reads (the thumbnail when it uses one, else the JPEG) and runs
 * it on one frame, racing the frame timeout and the worker's stop (both abort `abort`).
 */
export async function runFrame(
  o: RunFrameOptions,
  frame: FrameMessage,
  attempt: number,
  abort: AbortController,
  stop: AbortSignal,
): Promise<ProcessorResult> {
  const { processor, redis, id, logger, frameTimeoutMs } = o;
  const onStop = () => abort.abort(new ShutdownError('the worker is stopping'));
  stop.addEventListener('abort', onStop);
  let timer: NodeJS.Timeout | undefined;
  try {
    let image: Buffer | undefined;
    let thumbnail: GrayThumbnail | undefined;
    if (processor.usesThumbnail) {
      const data = await redis.getBuffer(thumbnailKey(frame.payloadKey));
      thumbnail = data ? thumbnailOf(data, frame.width, frame.height) : undefined;
    }
    if (processor.needsImage && !thumbnail) {
      image = (await redis.getBuffer(frame.payloadKey)) ?? undefined;
      if (!image) throw new PayloadExpiredError(`payload expired before processing (payload TTL): ${frame.payloadKey}`);
    }
    const stopped = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        abort.abort(new FrameTimeoutError(`timed out after ${frameTimeoutMs} ms`));
      }, frameTimeoutMs);
      abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true });
    });
    stopped.catch(() => undefined);
    return await Promise.race([
      Promise.resolve(
        processor.process(
          { ...frame, image, thumbnail },
          { processorId: id, logger, signal: abort.signal, attempt, options: o.options ?? {} },
        ),
      ),
      stopped,
    ]);
  } finally {
    clearTimeout(timer);
    stop.removeEventListener('abort', onStop);
  }
}
