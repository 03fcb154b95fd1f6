import type { FrameId } from './frame-id.js';

/**
 * What travels on frames:captured and frames:ready:<processor>: metadata only. The image
 * is stored once under payloadKey (with a TTL) and read by the processors that need it.
 */
export interface FrameMessage {
  frameId: FrameId;
  cameraId: string;
  /** ms since epoch; equals the time encoded in frameId. */
  capturedAt: number;
  width: number;
  height: number;
  /** Payload encoding, e.g. jpeg. */
  format: string;
  sizeBytes: number;
  /** 0 (lowest) .. 9 (highest). */
  priority: number;
  payloadKey: string;
  /** Capabilities the frame asks for; empty means every registered capability. */
  capabilities: string[];
  traceparent?: string;
  tracestate?: string;
  /** Set on frames:ready:<processor> by the buffer. */
  processorId?: string;
  capability?: string;
}
