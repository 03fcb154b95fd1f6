/** Shared with the main thread (Float64Array over a SharedArrayBuffer): what the reader is doing. */
export const PROGRESS = { phase: 0, phaseSince: 1, lastPacketAt: 2, lastFrameAt: 3, length: 4 } as const;
export const PHASE = { starting: 0, opening: 1, reading: 2, done: 3 } as const;
