export const PRESSURE_LEVELS = ['normal', 'high', 'critical'] as const;
export type PressureLevel = (typeof PRESSURE_LEVELS)[number];

export const SHED_POLICIES = ['lowest-priority', 'oldest'] as const;
export type ShedPolicy = (typeof SHED_POLICIES)[number];

export interface PressureOptions {
  /** Waiting frames, in multiples of capacity, at which intake slows. */
  high: number;
  /** ... at which intake pauses, and past which (with the upstream full too) frames are shed. */
  critical: number;
}

export interface Pressure {
  level: PressureLevel;
  /** Frames waiting in the lanes. */
  backlog: number;
  /** Frames the live processors hold at once (healthy ones; all live ones when none is healthy). */
  capacity: number;
  /** backlog / capacity. */
  ratio: number;
  highBound: number;
  criticalBound: number;
  /** Captured frames not yet taken in (the upstream stream's lag). */
  upstream: number;
  /**
   * Overload is sustained: the lanes are at the critical bound AND the upstream holds as
   * much again. Intake then resumes and the shed policy trims the lanes to the bound.
   */
  shedding: boolean;
}

/**
 * Backpressure from queue depth vs capacity:
 * - normal   (backlog < high x capacity): intake at full speed;
 * - high     (< critical x capacity): intake slowed (small batches, spaced out): short bursts
 *            wait upstream in frames:captured, which is durable and FIFO;
 * - critical (>= critical x capacity): intake paused. When the upstream lag reaches the
 *            critical bound as well, the overload is no burst: intake resumes and the lanes
 *            are trimmed back to the critical bound by the shed policy, every shed frame
 *            getting a frame.dropped event with its reason. Nothing is ever lost silently,
 *            and frames:captured never grows to its MAXLEN (where trimming would be silent).
 */
export function computePressure(o: PressureOptions, backlog: number, capacity: number, upstream: number): Pressure {
  const cap = Math.max(1, capacity);
  const highBound = Math.max(1, Math.ceil(o.high * cap));
  const criticalBound = Math.max(highBound, Math.ceil(o.critical * cap));
  const level: PressureLevel = backlog >= criticalBound ? 'critical' : backlog >= highBound ? 'high' : 'normal';
  return {
    level,
    backlog,
    capacity,
    ratio: backlog / cap,
    highBound,
    criticalBound,
    upstream,
    shedding: level === 'critical' && upstream >= criticalBound,
  };
}

export const LEVEL_VALUE: Record<PressureLevel, number> = { normal: 0, high: 1, critical: 2 };
