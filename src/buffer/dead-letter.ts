import type { FieldList } from '../bus/fields.js';
import type { Append } from '../bus/handoff.js';

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

/** The dead-letter stream entry for a frame the buffer gives up on, in the layout every consumer writes. */
export function deadLetterAppend(deadLetterStream: string, d: DeadLetter): Append {
  return {
    stream: deadLetterStream,
    fields: [
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
    ],
  };
}
