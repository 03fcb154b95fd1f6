import { EVENT_TYPES } from '../domain/events.js';
import {
  DECISIVE_ORDER,
  FRAME_DROP_EVENT,
  FRAME_STATE_RULES,
  FRAME_STATES,
  STAGE_EVENT_STATE,
  STAGE_EVENT_TYPES,
  STAGE_RANK,
  STAGE_STATES,
  TERMINAL_EVENT_TYPES,
  aggregateFrameState,
  isStageEvent,
  isTerminal,
  type StageEventType,
  type StageState,
} from '../domain/lifecycle.js';

/**
 * The lifecycle rules of src/domain/lifecycle.ts as SQL fragments, generated from its
 * tables so the store's projection cannot drift from the TypeScript (a property test
 * compares the two on real PostgreSQL). Only our own constants are spliced in.
 */

const list = (values: readonly string[]) => values.map((v) => `'${v}'`).join(', ');

/** Whether an event moves a stage; written as the (shorter) list of the types that do not. */
export const stageEventSql = (type: string) => `${type} NOT IN (${list(EVENT_TYPES.filter((t) => !isStageEvent(t)))})`;

/** `<type> IN (...)` of the events that end a stage. */
export const terminalEventSql = (type: string) => `${type} IN (${list(TERMINAL_EVENT_TYPES)})`;

/** `<state> IN (...)` of the terminal frame states. */
export const terminalFrameStateSql = (state: string) => `${state} IN (${list(FRAME_STATES.filter(isTerminal))})`;

/** `<state> IN (...)` of the frame states still in flight. */
export const openFrameStateSql = (state: string) => `${state} IN (${list(FRAME_STATES.filter((s) => !isTerminal(s)))})`;

/** Whether an event (its type and processor id columns) drops the whole frame before routing. */
export const droppedBeforeRoutingSql = (type: string, processorId: string) =>
  `(${type} = '${FRAME_DROP_EVENT}' AND ${processorId} IS NULL)`;

/**
 * `CASE <type> WHEN .. END` over stage events only: the most frequent value (the last one
 * given, for ties) is the ELSE, so a typical row is decided in as few comparisons as possible.
 */
function stageEventCase(type: string, valueOf: (t: StageEventType) => string): string {
  const values = STAGE_EVENT_TYPES.map(valueOf);
  const count = (v: string) => values.filter((x) => x === v).length;
  const otherwise = values.reduce((best, v) => (count(v) >= count(best) ? v : best));
  const arms = STAGE_EVENT_TYPES.filter((_t, i) => values[i] !== otherwise).map((t) => `WHEN '${t}' THEN ${valueOf(t)}`);
  return `CASE ${type} ${arms.join(' ')} ELSE ${otherwise} END`;
}

/** The stage state a stage event puts its stage in. */
export const stageStateSql = (type: string) => stageEventCase(type, (t) => `'${STAGE_EVENT_STATE[t]}'`);

/** STAGE_RANK of a stage event's state. */
export const stageRankSql = (type: string) => stageEventCase(type, (t) => String(STAGE_RANK[STAGE_EVENT_STATE[t]]));

/** The rank of a stage that has gone beyond being queued. */
export const STARTED_RANK = STAGE_RANK.processing;

/** ORDER BY terms putting a stage's decisive event first (DECISIVE_ORDER); `e` has a `rank` column. */
export function decisiveOrderSql(e: string): string {
  const term = {
    rank: `${e}.rank DESC`,
    attempt: `${e}.attempt DESC NULLS LAST`,
    at: `${e}.at DESC`,
    eventId: `${e}.event_id COLLATE "C" DESC`,
  };
  return DECISIVE_ORDER.map((k) => term[k]).join(', ');
}

const countColumn = (s: StageState) => `n_${s}`;

/** Per-frame stage counts over rows with a `state` column: `n` and one `n_<state>` per counted stage state. */
export const stageCountsSql = (state: string) =>
  ['count(*) AS n', ...COUNTED.map((s) => `count(*) FILTER (WHERE ${state} = '${s}') AS ${countColumn(s)}`)].join(', ');

/** The stage states the rules count (no other count is computed). */
const COUNTED = STAGE_STATES.filter((s) =>
  FRAME_STATE_RULES.some((r) => ('of' in r && r.of.includes(s)) || ('ignoring' in r && r.ignoring?.includes(s))),
);

/**
 * The frame's state (FRAME_STATE_RULES) from the stage counts of stageCountsSql (alias `c`,
 * NULL when the frame has no stages) and a boolean "dropped before routing" expression.
 */
export function frameStateSql(c: string, droppedBeforeRouting: string): string {
  // A frame without stages has no counts row: its state is what the rules give for none.
  const none = `WHEN ${c}.n IS NULL THEN CASE WHEN ${droppedBeforeRouting} THEN '${aggregateFrameState([], true)}' ELSE '${aggregateFrameState([])}' END`;
  const sum = (of: readonly StageState[]) => (of.length ? of.map((s) => `${c}.${countColumn(s)}`).join(' + ') : '0');
  const arms = FRAME_STATE_RULES.map((rule) => {
    if (rule.when === 'otherwise') return `ELSE '${rule.state}'`;
    const cond =
      rule.when === 'droppedBeforeRouting'
        ? droppedBeforeRouting
        : rule.when === 'every'
          ? `${sum(rule.of)} = ${c}.n - (${sum(rule.ignoring ?? [])})`
          : `${sum(rule.of)} > 0`;
    return `WHEN ${cond} THEN '${rule.state}'`;
  });
  return `CASE ${none} ${arms.join(' ')} END`;
}
