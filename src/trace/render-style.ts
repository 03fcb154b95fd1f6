import type { Style } from '../terminal/colors.js';

/** One colour per frame or stage state, the same in every trace view. */
export const STATE_STYLE: Record<string, Style> = {
  completed: 'green',
  failed: 'red',
  dropped: 'magenta',
  processing: 'yellow',
  queued: 'cyan',
  captured: 'gray',
};

/** The tables' style: compact (no rule between rows), so a long journey or list stays on one screen. */
export function tableStyle(color?: boolean) {
  return color ? { head: ['cyan'], border: ['gray'], compact: true } : { head: [], border: [], compact: true };
}
