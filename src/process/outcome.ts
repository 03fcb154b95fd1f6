import { encodeEvent } from '../bus/event-codec.js';
import { MESSAGE_VERSION, toFieldList } from '../bus/fields.js';
import type { RedisKeys } from '../bus/keys.js';
import { makeEvent, type LifecycleEvent, type NewEvent } from '../domain/events.js';
import type { FrameMessage } from '../domain/frame.js';
import type { TraceCarrier } from '../telemetry/tracing.js';
import type { ProcessorResult } from './processor.js';

const MAX_RESULT_BYTES = 60 * 1024;

/** How one frame's processing ended. */
export type FrameOutcome =
  | { kind: 'completed'; result?: ProcessorResult; resultJson: string }
  | { kind: 'failed'; error: string }
  | { kind: 'dropped'; reason: string };

/** The result as stored on the results stream; throws (a processing failure) when over the size limit. */
export function resultJsonOf(result: ProcessorResult | undefined): string {
  const json = JSON.stringify(result ?? {});
  if (json.length > MAX_RESULT_BYTES) throw new Error(`result too large: ${json.length} bytes (limit ${MAX_RESULT_BYTES})`);
  return json;
}

/** The small scalar part of a result, kept on the processing.completed event (the store shows it). */
function summary(result: ProcessorResult): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, v] of Object.entries(result)) {
    if (n >= 12) break;
    if (typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v.length <= 80)) {
      out[k] = v;
      n++;
    } else if (Array.isArray(v)) {
      out[`${k}Count`] = v.length;
      n++;
    }
  }
  return n ? out : undefined;
}

export interface OutcomeInput {
  keys: RedisKeys;
  processorId: string;
  frame: FrameMessage;
  attempt: number;
  /** The fields every lifecycle event of this attempt carries (frame, camera, processor, span ids). */
  base: Omit<NewEvent, 'type'>;
  durationMs: number;
  outcome: FrameOutcome;
  /** traceparent of the process span, carried by the result entry. */
  traceContext: TraceCarrier;
}

/** What one commit appends: the result (completed frames only), then the lifecycle event. */
export function outcomeTargets(o: OutcomeInput): { stream: string; fields: string[] }[] {
  const { keys, base, durationMs, outcome } = o;
  const event: LifecycleEvent =
    outcome.kind === 'dropped'
      ? makeEvent({ ...base, type: 'frame.dropped', reason: outcome.reason })
      : outcome.kind === 'completed'
        ? makeEvent({ ...base, type: 'processing.completed', durationMs, data: outcome.result ? summary(outcome.result) : undefined })
        : makeEvent({ ...base, type: 'processing.failed', durationMs, error: outcome.error });
  const targets = [{ stream: keys.events, fields: encodeEvent(event) }];
  if (outcome.kind === 'completed') {
    targets.unshift({
      stream: keys.results,
      fields: toFieldList({
        v: MESSAGE_VERSION,
        frame_id: o.frame.frameId,
        camera_id: o.frame.cameraId,
        processor_id: o.processorId,
        capability: o.frame.capability,
        attempt: o.attempt,
        duration_ms: Math.round(durationMs * 1000) / 1000,
        at: Date.now(),
        result: outcome.resultJson,
        ...o.traceContext,
      }),
    });
  }
  return targets;
}
