import type { FrameMessage } from '../domain/frame.js';
import type { Logger } from '../telemetry/logger.js';

/** What a processor gets for each frame. */
export interface FrameInput extends FrameMessage {
  /** The encoded image (JPEG), present when the processor declares needsImage. */
  image?: Buffer;
}

export interface ProcessorContext {
  processorId: string;
  logger: Logger;
  /** Aborted when the per-frame timeout passes or the worker stops. */
  signal: AbortSignal;
}

/** A JSON-serialisable result, published on the results stream. */
export type ProcessorResult = Record<string, unknown>;

/**
 * The plugin interface. A module exporting `default` (or `processor`) of this shape can be
 * run with `detektr process --module ./my-processor.js`.
 */
export interface Processor {
  name: string;
  capabilities: string[];
  /** Load the frame's image from Redis before `process` (default false). */
  needsImage?: boolean;
  setup?(ctx: Omit<ProcessorContext, 'signal'>): Promise<void> | void;
  process(frame: FrameInput, ctx: ProcessorContext): Promise<ProcessorResult> | ProcessorResult;
  teardown?(): Promise<void> | void;
}
