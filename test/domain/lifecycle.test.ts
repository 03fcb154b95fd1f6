import { describe, expect, it } from 'vitest';
import { aggregateFrameState, transitionFrame, transitionStage } from '../../src/domain/lifecycle.js';
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
