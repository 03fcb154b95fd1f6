import type { ChainableCommander } from 'ioredis';
import { ID_RE, toFieldMap } from '../bus/fields.js';
import { isFrameId } from '../domain/frame-id.js';
import type { RedisKeys } from '../bus/keys.js';
import { addEvent } from '../bus/publish.js';
import type { DeadLetterEntry } from '../bus/stream-consumer.js';
import { makeEvent } from '../domain/events.js';
import type { Metrics } from '../telemetry/metrics.js';

export interface DeadLetterEventOptions {
  keys: RedisKeys;
  /** The processor id whose ready stream dead-lettered the entries. */
  id: string;
  streamMaxLen: number;
  maxDeliveries: number;
  metrics: Metrics;
}

/**
 * A frame dead-lettered from a processor's stream (it kept killing its processor, or was
 * malformed) ends its stage as processing.failed, in the dead-lettering transaction.
 * Entries that do not name a valid frame and camera get no event.
 */
export function addDeadLetterFailures(tx: ChainableCommander, bad: DeadLetterEntry[], o: DeadLetterEventOptions): void {
  const { keys, id, streamMaxLen, metrics } = o;
  for (const b of bad) {
    let map: Map<string, string>;
    try {
      map = toFieldMap(b.fields);
    } catch {
      continue;
    }
    const frameId = map.get('frame_id');
    const cameraId = map.get('camera_id');
    if (!frameId || !cameraId || !isFrameId(frameId) || !ID_RE.test(cameraId)) continue;
    const capability = map.get('capability');
    const error = b.reason.startsWith('malformed')
      ? `dead-lettered: ${b.reason}`
      : `dead-lettered after ${b.deliveries} deliveries (max ${o.maxDeliveries}): the frame keeps killing its processor`;
    addEvent(
      tx,
      keys,
      makeEvent({
        type: 'processing.failed',
        frameId,
        cameraId,
        source: 'process',
        processorId: id,
        capability: capability && ID_RE.test(capability) ? capability : undefined,
        attempt: Math.max(1, b.deliveries),
        error,
      }),
      streamMaxLen,
    );
    metrics.framesProcessed.inc({ processor: id, outcome: 'dead_lettered' });
  }
}
