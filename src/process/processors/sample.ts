import type { Processor } from '../processor.js';

/** Metadata only: proves the path end to end without touching pixels. */
export const sampleProcessor: Processor = {
  name: 'sample',
  capabilities: ['sample'],
  needsImage: false,
  process(frame, ctx) {
    return {
      cameraId: frame.cameraId,
      width: frame.width,
      height: frame.height,
      sizeBytes: frame.sizeBytes,
      priority: frame.priority,
      ageMs: Date.now() - frame.capturedAt,
      attempt: ctx?.attempt ?? 1,
    };
  },
};

export function createSampleProcessor(): Processor {
  return { ...sampleProcessor };
}
