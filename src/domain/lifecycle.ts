import { InvalidTransitionError } from './errors.js';
import type { EventType } from './events.js';

/**
 * The one description of the frame lifecycle. Two levels: a frame fans out to one processor
 * per capability; each such hand-off is a stage with its own small machine. The frame's
 * state is the aggregate of its stages, so it only moves forward whatever order the
 * processors finish in.
 *
 * Everything here is data or a pure function of it, because three readers must agree: the
 * store's projection SQL is generated from these tables (src/store/lifecycle-sql.ts),
 * `trace find` replays a journey through them (src/trace/journey.ts), and a property test
 * checks that what PostgreSQL stores equals projectFrame() for any events in any order.
 */
export const FRAME_STATES = ['captured', 'queued', 'processing', 'completed', 'failed', 'dropped'] as const;
export type FrameState = (typeof FRAME_STATES)[number];

export const STAGE_STATES = ['queued', 'processing', 'completed', 'failed', 'dropped'] as const;
export type StageState = (typeof STAGE_STATES)[number];

const FRAME_TRANSITIONS: Record<FrameState, readonly FrameState[]> = {
  captured: ['queued', 'dropped'],
  queued: ['processing', 'dropped'],
  // processing -> queued: the only started stage was re-routed (its new stage waits);
  // processing -> dropped: the last open stage ended dropped (payload expired).
  processing: ['queued', 'completed', 'failed', 'dropped'],
  completed: [],
  failed: [],
  dropped: [],
};

const STAGE_TRANSITIONS: Record<StageState, readonly StageState[]> = {
  queued: ['processing', 'dropped'],
  // processing -> processing: a redelivery after the first consumer died;
  // processing -> dropped: the buffer re-routed the frame away from a dead processor, or
  // the processor found the payload expired.
  processing: ['processing', 'completed', 'failed', 'dropped'],
  completed: [],
  failed: [],
  dropped: [],
};

/** The events that move a stage, and where each puts it. frame.captured is no stage event. */
export const STAGE_EVENT_STATE = {
  'frame.queued': 'queued',
  'processing.started': 'processing',
  'processing.completed': 'completed',
  'processing.failed': 'failed',
  'frame.dropped': 'dropped',
} as const satisfies Record<Exclude<EventType, 'frame.captured'>, StageState>;
export type StageEventType = keyof typeof STAGE_EVENT_STATE;
export const STAGE_EVENT_TYPES = Object.keys(STAGE_EVENT_STATE) as StageEventType[];

/** How far along its machine a stage state is: an event of a further state outweighs any nearer one. */
export const STAGE_RANK: Record<StageState, number> = { queued: 1, processing: 2, completed: 3, failed: 3, dropped: 3 };

/** A frame.dropped without a processor ends the whole frame before routing, whatever its stages say. */
export const FRAME_DROP_EVENT: EventType = 'frame.dropped';

export function isTerminal(state: FrameState | StageState): boolean {
  return state === 'completed' || state === 'failed' || state === 'dropped';
}

/** Stage events that end their stage; the frame's total time runs to the last of them. */
export const TERMINAL_EVENT_TYPES = STAGE_EVENT_TYPES.filter((t) => isTerminal(STAGE_EVENT_STATE[t]));

export function isStageEvent(type: EventType): type is StageEventType {
  return type in STAGE_EVENT_STATE;
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

/**
 * How a frame's state follows from its stages: the first rule that holds. With `n` the
 * number of stages and `#S` the number in one of the states S:
 * - `every` S `ignoring` I: #S = n - #I (no stages: holds);
 * - `some` S: #S > 0;
 * - `droppedBeforeRouting`: the frame has a frame.dropped without a processor.
 * Kept as data so the store's SQL CASE is generated from the same rules.
 */
export type FrameStateRule =
  | { state: FrameState; when: 'droppedBeforeRouting' }
  | { state: FrameState; when: 'every'; of: readonly StageState[]; ignoring?: readonly StageState[] }
  | { state: FrameState; when: 'some'; of: readonly StageState[] }
  | { state: FrameState; when: 'otherwise' };

export const FRAME_STATE_RULES: readonly FrameStateRule[] = [
  { state: 'dropped', when: 'droppedBeforeRouting' },
  { state: 'captured', when: 'every', of: [] },
  { state: 'dropped', when: 'every', of: ['dropped'] },
  { state: 'queued', when: 'every', of: ['queued'], ignoring: ['dropped'] },
  { state: 'processing', when: 'some', of: ['queued', 'processing'] },
  { state: 'failed', when: 'some', of: ['failed'] },
  { state: 'completed', when: 'otherwise' },
];

/** The frame's state given its stages (none yet: captured, or dropped before routing). */
export function aggregateFrameState(stages: readonly StageState[], droppedBeforeRouting = false): FrameState {
  const count = (of: readonly StageState[]) => stages.filter((s) => of.includes(s)).length;
  for (const rule of FRAME_STATE_RULES) {
    const holds =
      rule.when === 'droppedBeforeRouting'
        ? droppedBeforeRouting
        : rule.when === 'every'
          ? count(rule.of) === stages.length - count(rule.ignoring ?? [])
          : rule.when === 'some'
            ? count(rule.of) > 0
            : true;
    if (holds) return rule.state;
  }
  throw new Error('FRAME_STATE_RULES must end with an otherwise rule');
}

/** What the projection needs of an event. */
export interface EventFacts {
  eventId: string;
  type: EventType;
  at: number;
  processorId?: string | null;
  attempt?: number | null;
}

/**
 * Which of a stage's events decides its state, most decisive first: the further state
 * (STAGE_RANK), then the later attempt (an event without one comes last), then the later
 * time, then the greater event id (byte order). A total order, so the decision does not
 * depend on arrival order or duplicates. The SQL's ORDER BY is generated from this list.
 */
export const DECISIVE_ORDER = ['rank', 'attempt', 'at', 'eventId'] as const;

function sortKey(e: EventFacts, key: (typeof DECISIVE_ORDER)[number]): number | string {
  if (key === 'rank') return STAGE_RANK[STAGE_EVENT_STATE[e.type as StageEventType]];
  if (key === 'attempt') return e.attempt ?? -Infinity;
  return e[key];
}

/** Whether event a decides its stage over event b. */
export function outweighs(a: EventFacts, b: EventFacts): boolean {
  for (const key of DECISIVE_ORDER) {
    const x = sortKey(a, key);
    const y = sortKey(b, key);
    if (x !== y) return x > y;
  }
  return false;
}

export interface FrameProjection {
  state: FrameState;
  /** Processor id -> the stage's state. */
  stages: Map<string, StageState>;
}

/**
 * The frame's projection from its events, in any order, duplicates included: each stage
 * (events with a processor id) takes the state of its decisive event; the frame aggregates
 * them. Stage events without a processor id, other than a frame drop, belong to no stage.
 * This is what the store keeps in processing_stages and frame_metadata.
 */
export function projectFrame(events: Iterable<EventFacts>): FrameProjection {
  const decisive = new Map<string, EventFacts>();
  let droppedBeforeRouting = false;
  for (const e of events) {
    if (!isStageEvent(e.type)) continue;
    if (!e.processorId) {
      if (e.type === FRAME_DROP_EVENT) droppedBeforeRouting = true;
      continue;
    }
    const current = decisive.get(e.processorId);
    if (current === undefined || outweighs(e, current)) decisive.set(e.processorId, e);
  }
  const stages = new Map([...decisive].map(([id, e]) => [id, STAGE_EVENT_STATE[e.type as StageEventType]]));
  return { state: aggregateFrameState([...stages.values()], droppedBeforeRouting), stages };
}
