import type { ChainableCommander } from 'ioredis';
import type { LifecycleEvent } from '../domain/events.js';
import type { FrameMessage } from '../domain/frame.js';
import type { CameraEvent } from '../domain/camera-events.js';
import { encodeCameraEvent, encodeEvent } from './event-codec.js';
import { encodeFrame } from './frame-codec.js';
import type { RedisKeys } from './keys.js';

/** Appends to a bounded stream: MAXLEN ~ keeps Redis memory capped at little cost. */
export function addEntry(tx: ChainableCommander, stream: string, fields: string[], maxLen: number): ChainableCommander {
  return tx.xadd(stream, 'MAXLEN', '~', maxLen, '*', ...fields);
}

export function addEvent(tx: ChainableCommander, keys: RedisKeys, event: LifecycleEvent, maxLen: number): ChainableCommander {
  return addEntry(tx, keys.events, encodeEvent(event), maxLen);
}

export function addCameraEvent(tx: ChainableCommander, keys: RedisKeys, event: CameraEvent, maxLen: number): ChainableCommander {
  return addEntry(tx, keys.events, encodeCameraEvent(event), maxLen);
}

export function addFrame(tx: ChainableCommander, stream: string, frame: FrameMessage, maxLen: number): ChainableCommander {
  return addEntry(tx, stream, encodeFrame(frame), maxLen);
}

/** EXEC, turning a failed command inside the transaction into a thrown error. */
export async function execOrThrow(tx: ChainableCommander): Promise<unknown[]> {
  const res = await tx.exec();
  if (!res) throw new Error('transaction aborted');
  const failed = res.find(([err]) => err);
  if (failed) throw failed[0];
  return res.map(([, v]) => v);
}
