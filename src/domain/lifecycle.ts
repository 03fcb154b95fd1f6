import { InvalidTransitionError } from './errors.js';

/**
 * Two levels of lifecycle. A frame fans out to one processor per capability; each such
 * hand-off is a stage with its own small machine. The frame's state is the aggregate of
 * its stages, so it only moves forward whatever order the processors finish in.
 */
export const FRAME_STATES = ['captured', 'queued', 'processing', 'completed', 'failed', 'dropped'] as const;
export type FrameState = (typeof FRAME_STATES)[number];

export const STAGE_STATES = ['queued', 'processing', 'completed', 'failed', 'dropped'] as const;
export type StageState = (typeof STAGE_STATES)[number];

const FRAME_TRANSITIONS: Record<FrameState, readonly FrameState[]> = {
  captured: ['queued', 'dropped'],
  queued: ['processing', 'dropped'],
  processing: ['completed', 'failed'],
  completed: [],
  failed: [],
  dropped: [],
};

const STAGE_TRANSITIONS: Record<StageState, readonly StageState[]> = {
  queued: ['processing', 'dropped'],
  // processing -> processing: a redelivery after the first consumer died;
  // processing -> dropped: the buffer re-routed the frame away from a dead processor.
  processing: ['processing', 'completed', 'failed', 'dropped'],
  completed: [],
  failed: [],
  dropped: [],
};

export function isTerminal(state: FrameState | StageState): boolean {
  return state === 'completed' || state === 'failed' || state === 'dropped';
}

export function transitionFrame(from: FrameState, to: FrameState): FrameState {
  if (from === to) return to;
  if (!FRAME_TRANSITIONS[from].includes(to)) {
    throw new InvalidTransitionError(`invalid frame transition ${from} -> ${to}`);
  }
  return to;
}

export function transitionStage(from: StageState | undefined, to: StageState): StageState {
  if (from === undefined) {
    if (to === 'queued') return to;
    throw new InvalidTransitionError(`a stage must start queued, not ${to}`);
  }
  if (!STAGE_TRANSITIONS[from].includes(to)) {
    throw new InvalidTransitionError(`invalid stage transition ${from} -> ${to}`);
  }
  return to;
}

/** The frame's state given its stages (none yet: captured, or dropped before routing). */
export function aggregateFrameState(stages: readonly StageState[], droppedBeforeRouting = false): FrameState {
  if (droppedBeforeRouting) return 'dropped';
  if (stages.length === 0) return 'captured';
  if (stages.every((s) => s === 'dropped')) return 'dropped';
  const live = stages.filter((s) => s !== 'dropped');
  if (live.every((s) => s === 'queued')) return 'queued';
  if (live.some((s) => s === 'queued' || s === 'processing')) return 'processing';
  return live.some((s) => s === 'failed') ? 'failed' : 'completed';
}
