import type { Counter } from 'prom-client';
import type { FailureReason } from '../capture/source-errors.js';

/**
 * The label values of the counters users alert on, so that every series exists at 0 from
 * start: `rate()` and `increase()` see the first event instead of a series appearing at 1.
 * A new reason used at a call site belongs here too (test/telemetry/metrics.test.ts checks
 * the call sites' literals against these lists).
 */
export const DROP_REASONS = {
  capture: ['corrupt', 'black', 'frozen', 'backlog', 'publish_failed'],
  buffer: ['no_processor', 'dead_letter', 'shed_oldest', 'shed_lowest_priority'],
  process: ['payload_expired'],
} as const;

// A Record so that a new FailureReason does not compile until it is listed here.
const FAILURE_REASONS: Record<FailureReason, true> = {
  unauthorized: true,
  not_found: true,
  host_not_found: true,
  not_video: true,
  invalid_source: true,
  refused: true,
  unreachable: true,
  timeout: true,
  stalled: true,
  ended: true,
  server_error: true,
  error: true,
};
export const RECONNECT_REASONS = Object.keys(FAILURE_REASONS) as FailureReason[];
export const DEAD_LETTER_REASONS = ['malformed', 'max_deliveries', 'trimmed_while_pending', 'trimmed_unread'] as const;
export const PROCESS_OUTCOMES = ['completed', 'failed', 'dead_lettered'] as const;
export const BREAKER_STATES = ['closed', 'half-open', 'open'] as const;
export const REROUTE_REASONS = ['gone', 'breaker_open'] as const;

/** Which drop reasons a worker can count: its own; `run` (and any other) hosts them all. */
export function dropReasonsOf(component: string): readonly string[] {
  const own = (DROP_REASONS as Record<string, readonly string[]>)[component];
  return own ?? Object.values(DROP_REASONS).flat();
}

type Labels = Record<string, string>;

/** Creates each combination of `base` with one value per listed label at 0 (once; later calls are no-ops). */
export function seedCounter(counter: Counter<string>, base: Labels, each: Record<string, readonly string[]> = {}): void {
  let combos: Labels[] = [base];
  for (const [label, values] of Object.entries(each)) combos = combos.flatMap((c) => values.map((v) => ({ ...c, [label]: v })));
  for (const c of combos) counter.inc(c, 0);
}
