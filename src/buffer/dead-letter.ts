import type { ChainableCommander } from 'ioredis';
import { ID_RE, toFieldMap, type FieldList } from '../bus/fields.js';
import { isFrameId } from '../domain/frame-id.js';
import { deadLetterFields, type DeadLetter } from '../bus/dead-letter-entry.js';
import type { Append } from '../bus/handoff.js';
import type { RedisKeys } from '../bus/keys.js';
import { addEvent } from '../bus/publish.js';
import type { DeadLetterEntry } from '../bus/stream-consumer.js';
import { makeEvent } from '../domain/events.js';
import type { Metrics } from '../telemetry/metrics.js';

/** The dead-letter stream entry for a frame the buffer gives up on. */
export function deadLetterAppend(deadLetterStream: string, d: DeadLetter): Append {
  return { stream: deadLetterStream, fields: deadLetterFields(d) };
}

function fieldOf(fields: FieldList, name: string): string | undefined {
  try {
    return toFieldMap(fields).get(name);
  } catch {
    return undefined;
  }
}

/**
 * A captured entry dead-lettered by intake's consumer (poison or malformed) still ends as a
 * frame.dropped when its ids are readable, in the same MULTI as its move: no frame stays
 * `captured` for ever without a word.
 */
export function droppedOnDeadLetter(
  tx: ChainableCommander,
  bad: DeadLetterEntry[],
  opts: { keys: RedisKeys; streamMaxLen: number; metrics: Metrics },
): void {
  for (const b of bad) {
    const frameId = fieldOf(b.fields, 'frame_id');
    const cameraId = fieldOf(b.fields, 'camera_id');
    if (!frameId || !cameraId || !isFrameId(frameId) || !ID_RE.test(cameraId)) continue;
    const event = makeEvent({ type: 'frame.dropped', frameId, cameraId, source: 'buffer', reason: `dead-lettered: ${b.reason}` });
    addEvent(tx, opts.keys, event, opts.streamMaxLen);
    opts.metrics.framesDropped.inc({ reason: 'dead_letter' });
  }
}
