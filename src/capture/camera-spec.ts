import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidInputError } from '../domain/errors.js';
import { redactUrl } from '../config/redact.js';

export type CameraKind = 'lavfi' | 'file' | 'rtsp';

/** A parsed `--camera id=url`. `url` is what the demuxer opens: a lavfi graph, a path or an rtsp url. */
export interface CameraSpec {
  id: string;
  url: string;
  kind: CameraKind;
}

export const TESTSRC_GRAPH = 'testsrc2=size=640x360:rate=25';

const CAMERA_ID = /^[A-Za-z0-9_-]{1,64}$/;
const HAS_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** Parses the value of `--camera id=url`; throws InvalidInputError naming the bad part (password masked). */
export function parseCameraSpec(spec: string): CameraSpec {
  const eq = spec.indexOf('=');
  if (eq < 0) {
    throw new InvalidInputError(`Invalid camera "${redactUrl(spec)}": expected id=url, e.g. cam1=testsrc`);
  }
  const id = spec.slice(0, eq);
  const url = spec.slice(eq + 1).trim();
  if (!CAMERA_ID.test(id)) {
    throw new InvalidInputError(`Invalid camera id "${id}": use 1-64 letters, digits, '_' or '-'`);
  }
  if (url === '') throw new InvalidInputError(`Camera "${id}" has an empty url`);
  if (CONTROL_CHARS.test(url)) {
    throw new InvalidInputError(`Camera "${id}" url "${redactUrl(url)}" contains control characters`);
  }
  return { id, ...parseCameraUrl(id, url) };
}

function parseCameraUrl(id: string, url: string): Omit<CameraSpec, 'id'> {
  if (url === 'testsrc') return { kind: 'lavfi', url: TESTSRC_GRAPH };
  if (url.startsWith('lavfi:')) {
    const graph = url.slice('lavfi:'.length).trim();
    if (graph === '') throw new InvalidInputError(`Camera "${id}": "lavfi:" needs a filter graph, e.g. lavfi:testsrc2=rate=25`);
    return { kind: 'lavfi', url: graph };
  }
  if (/^file:/i.test(url)) return { kind: 'file', url: filePath(id, url) };
  if (/^rtsps?:\/\//i.test(url)) return { kind: 'rtsp', url: checkRtsp(id, url) };
  if (HAS_SCHEME.test(url)) {
    const scheme = url.slice(0, url.indexOf(':'));
    throw new InvalidInputError(
      `Camera "${id}": unsupported scheme "${scheme}" in "${redactUrl(url)}" (use testsrc, lavfi:<graph>, rtsp://, file:// or a path)`,
    );
  }
  return { kind: 'file', url: resolve(url) };
}

function filePath(id: string, url: string): string {
  const bad = (cause?: unknown): InvalidInputError =>
    new InvalidInputError(`Camera "${id}": invalid file url "${redactUrl(url)}" (use file:///absolute/path)`, { cause });
  // WHATWG reads `file:rel/x.mp4` as /rel/x.mp4: insist on the unambiguous form.
  if (!/^file:\/\//i.test(url)) throw bad();
  try {
    return fileURLToPath(url);
  } catch (cause) {
    throw bad(cause);
  }
}

function checkRtsp(id: string, url: string): string {
  const bad = (why: string): InvalidInputError => new InvalidInputError(`Camera "${id}": invalid rtsp url "${redactUrl(url)}": ${why}`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // No cause: URL's own error message repeats the input, password included.
    throw bad('expected rtsp://[user:pass@]host[:port]/path');
  }
  if (parsed.hostname === '') throw bad('missing host');
  if (parsed.port !== '' && Number(parsed.port) === 0) throw bad('port must be 1-65535');
  // The original string goes to FFmpeg: URL would re-encode the credentials.
  return url;
}
