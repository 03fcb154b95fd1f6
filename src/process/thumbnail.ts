import type { GrayThumbnail } from './processor.js';

/**
 * Capture stores the thumbnail as bare gray bytes (`<payload key>:thumb`), its width set by
 * the capture config and its height keeping the frame's aspect ratio: find the width x
 * height that multiplies to the byte count with that aspect. Undefined when none fits.
 */
export function thumbnailOf(data: Buffer, frameWidth: number, frameHeight: number): GrayThumbnail | undefined {
  const aspect = frameHeight / frameWidth;
  const guess = Math.round(Math.sqrt(data.length / aspect));
  for (let d = 0; d <= 4; d++) {
    for (const w of d ? [guess - d, guess + d] : [guess]) {
      if (w < 1 || data.length % w !== 0) continue;
      const h = data.length / w;
      if (Math.abs(h - w * aspect) <= 2) return { data, width: w, height: h };
    }
  }
  return undefined;
}
