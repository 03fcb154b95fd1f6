/** A valid 32x32 grey JPEG (made with node-av's mjpeg encoder). */
const BASE = Buffer.from(
  '/9j//gAQTGF2YzYyLjM2LjEwMQD/2wBDAAgiIigiKC4uLi4uLjczNzk5OTc3Nzc5OTk9PT1ISEg9PT05OT09RERISE5QTkpKSEpQUFVVVWZmYWF3d3uSkrD/xABKAAEAAAAAAAAAAAAAAAAAAAAAAQEAAAAAAAAAAAAAAAAAAAAAEAEAAAAAAAAAAAAAAAAAAAAAEQEAAAAAAAAAAAAAAAAAAAAA/8AAEQgAIAAgAwEiAAIRAAMRAP/aAAwDAQACEQMRAD8AAAAAAAAA/9k=',
  'base64',
);
export const SYNTHETIC_JPEG_SIZE = { width: 32, height: 32 };
const MAX_SEGMENT = 65_533;

/**
 * A decodable JPEG of about `sizeBytes`: the small image padded with comment (COM)
 * segments, so load tests move realistic payload sizes that processors can still decode.
 */
export function syntheticJpeg(sizeBytes: number): Buffer {
  let missing = Math.max(0, sizeBytes - BASE.length);
  const parts: Buffer[] = [BASE.subarray(0, 2)];
  while (missing > 4) {
    const n = Math.min(MAX_SEGMENT, missing - 4);
    const seg = Buffer.alloc(4 + n, 0x20);
    seg[0] = 0xff;
    seg[1] = 0xfe;
    seg.writeUInt16BE(n + 2, 2);
    parts.push(seg);
    missing -= 4 + n;
  }
  parts.push(BASE.subarray(2));
  return Buffer.concat(parts);
}
