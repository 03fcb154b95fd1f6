import type { FrameMessage } from '../domain/frame.js';
import type { Logger } from '../telemetry/logger.js';

/** A full-range 8-bit gray image, row-major, width x height bytes. */
export interface GrayThumbnail {
  data: Buffer;
  width: number;
  height: number;
}

/** What a processor gets for each frame. */
export interface FrameInput extends FrameMessage {
  /** The encoded image (JPEG), present when the processor declares needsImage (and no thumbnail replaced it). */
  image?: Buffer;
  /** The gray thumbnail capture stored beside the JPEG (`--thumbnail-width`), for processors declaring usesThumbnail. */
  thumbnail?: GrayThumbnail;
}

/** Options given with `detektr process --opt key=value` (repeatable), as strings. */
export type ProcessorOptions = Record<string, string>;

export interface SetupContext {
  processorId: string;
  logger: Logger;
  options: ProcessorOptions;
}

export interface ProcessorContext extends SetupContext {
  /** Aborted when the per-frame timeout passes or the worker stops. */
  signal: AbortSignal;
  /** Delivery attempt of this frame at this processor, 1-based (more after a crash elsewhere). */
  attempt: number;
}

/** A JSON-serialisable result, published on the results stream. */
export type ProcessorResult = Record<string, unknown>;

/**
 * The plugin interface. A module exporting `default` (or `processor`) of this shape, or
 * exporting `process` (and `capabilities`, optional `name`, `needsImage`, `setup`,
 * `teardown`) at its top level, runs with `detektr process --module ./my-processor.js`.
 * `--capability` on the command line declares or overrides the capabilities.
 */
export interface Processor {
  name: string;
  capabilities: string[];
  /** Load the frame's image from Redis before `process` (default false). */
  needsImage?: boolean;
  /**
   * Load capture's gray thumbnail when there is one; the JPEG is then not loaded (needsImage
   * only applies to frames without a thumbnail).
   */
  usesThumbnail?: boolean;
  setup?(ctx: SetupContext): Promise<void> | void;
  process(frame: FrameInput, ctx: ProcessorContext): Promise<ProcessorResult> | ProcessorResult;
  teardown?(): Promise<void> | void;
}
