import type { FieldList } from './fields.js';

/** An entry given up on: where it was, why, and its fields as they were. */
export interface DeadLetter {
  /** The stream the entry leaves. */
  stream: string;
  id: string;
  /** The consumer group it was pending in (lanes have none). */
  group?: string;
  reason: string;
  deliveries: number;
  fields: FieldList;
}

/** The dead-letter stream entry, in the one layout every consumer writes and `validate` reads. */
export function deadLetterFields(d: DeadLetter): string[] {
  return [
    'stream',
    d.stream,
    'entry_id',
    d.id,
    ...(d.group === undefined ? [] : ['group', d.group]),
    'reason',
    d.reason,
    'deliveries',
    String(d.deliveries),
    'at',
    String(Date.now()),
    'fields',
    // A value is capped at 64 KiB on the way in too: the original could not be bigger.
    JSON.stringify(d.fields).slice(0, 65_536),
  ];
}
