import type { Processor } from '../processor.js';

/** Metadata only: proves the path end to end without touching pixels. */
export const sampleProcessor: Processor = {
  name: 'sample',
  capabilities: ['sample'],
  needsImage: false,
  process(frame) {
    return {
      cameraId: frame.cameraId,
      width: frame.width,
      height: frame.height,
      sizeBytes: frame.sizeBytes,
      ageMs: Date.now() - frame.capturedAt,
    };
  },
};
