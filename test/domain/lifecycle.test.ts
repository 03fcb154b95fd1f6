import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, type LifecycleEvent } from '../../src/domain/events.js';
import {
  FRAME_STATES,
  aggregateFrameState,
  projectFrame,
  transitionFrame,
  transitionStage,
  type FrameState,
  type StageState,
} from '../../src/domain/lifecycle.js';
import { InvalidTransitionError } from '../../src/domain/errors.js';

describe('frame lifecycle', () => {
  it('walks the happy path', () => {
    let s = transitionFrame('captured', 'queued');
    s = transitionFrame(s, 'processing');
    expect(transitionFrame(s, 'completed')).toBe('completed');
  });

  it('rejects going backwards or leaving a terminal state', () => {
    expect(() => transitionFrame('completed', 'processing')).toThrow(InvalidTransitionError);
    expect(() => transitionFrame('dropped', 'queued')).toThrow(/dropped -> queued/);
    expect(() => transitionFrame('captured', 'completed')).toThrow(InvalidTransitionError);
    expect(() => transitionFrame('processing', 'captured')).toThrow(InvalidTransitionError);
  });

  it('lets a stage be redelivered while processing but not after it finished', () => {
    expect(transitionStage('processing', 'processing')).toBe('processing');
    expect(transitionStage('processing', 'dropped')).toBe('dropped'); // re-routed from a dead processor
    expect(() => transitionStage('completed', 'processing')).toThrow(InvalidTransitionError);
    expect(() => transitionStage(undefined, 'completed')).toThrow(/must start queued/);
  });

  it('aggregates fan-out stages into one frame state', () => {
    expect(aggregateFrameState([])).toBe('captured');
    expect(aggregateFrameState([], true)).toBe('dropped');
    expect(aggregateFrameState(['queued', 'queued'])).toBe('queued');
    expect(aggregateFrameState(['completed', 'queued'])).toBe('processing');
    expect(aggregateFrameState(['completed', 'completed'])).toBe('completed');
    expect(aggregateFrameState(['completed', 'failed'])).toBe('failed');
    expect(aggregateFrameState(['dropped', 'completed'])).toBe('completed');
    expect(aggregateFrameState(['dropped', 'dropped'])).toBe('dropped');
  });
});

describe('the frame follows its stages', () => {
  it('lets a frame go back to queued or end dropped from processing (re-route after start, payload expired)', () => {
    expect(transitionFrame('processing', 'queued')).toBe('queued');
    expect(transitionFrame('processing', 'dropped')).toBe('dropped');
    expect(() => transitionFrame('completed', 'dropped')).toThrow(InvalidTransitionError);
  });

  /**
   * A history the pipeline can produce: routing queues one stage per capability; then,
   * one open stage at a time, a processor starts it (again, on redelivery), completes or
   * fails it, finds its payload expired, or the buffer re-routes it (the new stage's
   * frame.queued before the old stage's frame.dropped).
   */
  const history = fc
    .record({
      capabilities: fc.integer({ min: 1, max: 3 }),
      steps: fc.array(fc.record({ pick: fc.nat(), action: fc.constantFrom('start', 'complete', 'fail', 'expire', 'reroute') }), {
        maxLength: 15,
      }),
    })
    .map(({ capabilities, steps }) => {
      const moves: Array<[string, StageState]> = [];
      const stages = new Map<string, StageState>();
      const move = (id: string, to: StageState) => {
        moves.push([id, to]);
        stages.set(id, to);
      };
      for (let c = 0; c < capabilities; c++) move(`p${c}`, 'queued');
      let next = capabilities;
      for (const { pick, action } of steps) {
        const open = [...stages].filter(([, s]) => s === 'queued' || s === 'processing');
        if (open.length === 0) break;
        const [id, state] = open[pick % open.length];
        if (action === 'start') move(id, 'processing');
        else if (action === 'reroute') {
          move(`p${next++}`, 'queued');
          move(id, 'dropped');
        } else if (state === 'processing') move(id, action === 'complete' ? 'completed' : action === 'fail' ? 'failed' : 'dropped');
      }
      return moves;
    });

  it('every history the pipeline can produce moves stage and frame only along the listed transitions', () => {
    fc.assert(
      fc.property(history, (moves) => {
        const stages = new Map<string, StageState>();
        let frame: FrameState = 'captured';
        for (const [id, to] of moves) {
          stages.set(id, transitionStage(stages.get(id), to));
          frame = transitionFrame(frame, aggregateFrameState([...stages.values()]));
        }
        expect(FRAME_STATES).toContain(frame);
      }),
      { numRuns: 300 },
    );
  });
});

describe('projectFrame', () => {
  const ev = (eventId: string, type: LifecycleEvent['type'], at: number, processorId?: string, attempt?: number) => ({
    eventId,
    type,
    at,
    processorId,
    attempt,
  });

  it('decides a stage by its furthest event, then the later attempt, time and event id', () => {
    const stage = (...events: ReturnType<typeof ev>[]) => projectFrame(events).stages.get('p');
    expect(stage(ev('2', 'processing.started', 9, 'p', 1), ev('1', 'processing.completed', 5, 'p', 1))).toBe('completed');
    expect(stage(ev('1', 'processing.failed', 5, 'p', 2), ev('2', 'processing.completed', 9, 'p', 1))).toBe('failed');
    expect(stage(ev('1', 'processing.failed', 5, 'p'), ev('2', 'processing.completed', 9, 'p', 1))).toBe('completed');
    expect(stage(ev('1', 'processing.failed', 9, 'p', 1), ev('2', 'processing.completed', 5, 'p', 1))).toBe('failed');
    expect(stage(ev('B', 'processing.failed', 5, 'p', 1), ev('A', 'processing.completed', 5, 'p', 1))).toBe('failed');
  });

  it('drops the frame on a frame.dropped without processor, and gives events without a processor no stage', () => {
    const p = projectFrame([ev('1', 'frame.queued', 1, 'p'), ev('2', 'processing.started', 2), ev('3', 'frame.dropped', 3)]);
    expect(p.state).toBe('dropped');
    expect([...p.stages]).toEqual([['p', 'queued']]);
    expect(projectFrame([ev('1', 'frame.captured', 0)]).state).toBe('captured');
  });

  const event = fc.record({
    type: fc.constantFrom(...EVENT_TYPES),
    processorId: fc.option(fc.constantFrom('a', 'b'), { nil: undefined }),
    attempt: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
    at: fc.integer({ min: 0, max: 3 }),
  });
  const events = fc.uniqueArray(event, { minLength: 1, maxLength: 10 }).map((list) => list.map((e, i) => ({ ...e, eventId: `e${i}` })));

  it('leaves a failed frame a processing.failed event and a dropped one a frame.dropped (how trace search finds them)', () => {
    fc.assert(
      fc.property(events, (list) => {
        const { state } = projectFrame(list);
        if (state === 'failed') expect(list.map((e) => e.type)).toContain('processing.failed');
        if (state === 'dropped') expect(list.map((e) => e.type)).toContain('frame.dropped');
      }),
      { numRuns: 300 },
    );
  });

  it('gives the same projection for the events in any order, with duplicates', () => {
    fc.assert(
      fc.property(
        events.chain((list) => fc.tuple(fc.constant(list), fc.shuffledSubarray([...list, ...list], { minLength: list.length * 2 }))),
        ([list, arrival]) => {
          const a = projectFrame(list);
          const b = projectFrame(arrival);
          expect(b.state).toBe(a.state);
          expect(new Map(b.stages)).toEqual(new Map(a.stages));
        },
      ),
      { numRuns: 300 },
    );
  });
});
