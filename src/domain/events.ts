import { newEventId, type FrameId } from './frame-id.js';

/**
 * Lifecycle events (event sourcing). The store projects them into PostgreSQL, idempotently
 * by event_id, so a replayed event changes nothing.
 */
export const EVENT_TYPES = [
  'frame.captured',
  'frame.queued',
  'processing.started',
  'processing.completed',
  'processing.failed',
  'frame.dropped',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface LifecycleEvent {
  eventId: string;
  type: EventType;
  frameId: FrameId;
  cameraId: string;
  /** When the event happened, ms since epoch. */
  at: number;
  /** The component that emitted it: capture, buffer, process. */
  source: string;
  /** Processor the frame was handed to / processed by (queued, processing.*, dropped after routing). */
  processorId?: string;
  /** Capability the stage serves (e.g. motion). */
  capability?: string;
  /** Delivery attempt of the stage, 1-based. */
  attempt?: number;
  /** processing.completed/failed: how long the processor ran. */
  durationMs?: number;
  /** processing.failed: error message; frame.dropped: reason. */
  error?: string;
  reason?: string;
  /** W3C trace context of the span that emitted the event. */
  traceId?: string;
  spanId?: string;
  /** Whether that span was sampled (the traceparent flags); absent means sampled. */
  sampled?: boolean;
  /** Small, event-specific extras (frame size, processor result summary). */
  data?: Record<string, unknown>;
}

export type NewEvent = Omit<LifecycleEvent, 'eventId' | 'at'> & { at?: number; eventId?: string };

export function makeEvent(e: NewEvent): LifecycleEvent {
  return { ...e, eventId: e.eventId ?? newEventId(), at: e.at ?? Date.now() };
}
