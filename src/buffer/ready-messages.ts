import { trace, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { encodeEvent } from '../bus/event-codec.js';
import type { FieldList } from '../bus/fields.js';
import { encodeFrame } from '../bus/frame-codec.js';
import type { RedisKeys } from '../bus/keys.js';
import { makeEvent } from '../domain/events.js';
import type { FrameMessage } from '../domain/frame.js';
import { ATTR } from '../telemetry/attributes.js';
import { injectContext, spanIds, startMessagingSpan } from '../telemetry/tracing.js';
import type { Decision, StrategyName } from './router.js';

/** One target of a hand-off script: the ready stream, the room it must have, what goes into it and into events. */
export interface ReadyRoute {
  stream: string;
  capacity: number;
  message: FieldList;
  event: FieldList;
}

export interface ReadyMessagesOptions {
  keys: RedisKeys;
  tracer: Tracer;
  strategy: StrategyName;
}

/**
 * The ready messages and frame.queued events of a routed frame, each with its `send` span
 * (the parent of the processor's span: the trace follows the frame into each processor).
 * Intake's fast path and the dispatcher hand frames off alike, so both build them here.
 */
export function readyMessages(
  opts: ReadyMessagesOptions,
  frame: FrameMessage,
  parent: Context,
  decision: Extract<Decision, { kind: 'route' }>,
  capacity: ReadonlyMap<string, number>,
  attrs: Record<string, string | number>,
): { routes: ReadyRoute[]; spans: Span[] } {
  const { keys, tracer } = opts;
  const spans: Span[] = [];
  const routes = decision.routes.map(({ processorId, capability }) => {
    const stream = keys.ready(processorId);
    const send = startMessagingSpan(tracer, 'send', stream, parent, {
      [ATTR.frameId]: frame.frameId,
      [ATTR.cameraId]: frame.cameraId,
      [ATTR.processorId]: processorId,
      [ATTR.capability]: capability,
      'detektr.strategy': opts.strategy,
      ...attrs,
    });
    spans.push(send);
    const carrier = injectContext(trace.setSpan(parent, send));
    const message = encodeFrame({ ...frame, processorId, capability, ...carrier });
    const event = encodeEvent(
      makeEvent({
        type: 'frame.queued',
        frameId: frame.frameId,
        cameraId: frame.cameraId,
        source: 'buffer',
        processorId,
        capability,
        attempt: 1,
        ...spanIds(send),
      }),
    );
    return { stream, capacity: capacity.get(processorId) ?? 0, message, event };
  });
  return { routes, spans };
}
