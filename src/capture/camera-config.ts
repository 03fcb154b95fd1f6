/**
 * Per-camera settings: the command's defaults (flags > environment > config file >
 * defaults) overridden, for cameras listed as objects in the config file, by the entry's
 * own keys:
 *
 *   cameras:
 *     - id: front
 *       url: rtsp://user:pass@192.0.2.10:554/stream
 *       detect-url: rtsp://user:pass@192.0.2.10:554/sub   # frames from the sub-stream
 *       jpeg-width: 640
 *       fps: 10
 *       transport: udp
 *       timeout: 3s
 *       invalid-frames: corrupt=drop,black=drop
 *       ffmpeg-options: { buffer_size: 1048576 }
 */
import { parseValue } from '../config/parse-value.js';
import { redactUrl } from '../config/redact.js';
import type { KeySpec } from '../config/schema.js';
import { InvalidInputError } from '../domain/errors.js';
import { parseCameraSpec, type CameraKind, type CameraSpec } from './camera-spec.js';
import { DEFAULT_VALIDATION, parsePolicy, type ValidationOptions } from './frame-check.js';
import type { HwaccelChoice } from './hwaccel.js';

export interface CameraSettings {
  fps: number;
  jpegQuality: number;
  transport: 'tcp' | 'udp';
  /** Open and read timeout of every FFmpeg call. */
  timeoutMs: number;
  /** No decoded frame for this long: reconnect. */
  stallTimeoutMs: number;
  validation: ValidationOptions;
  /** Gray thumbnail width stored beside the JPEG (0: none). */
  thumbnailWidth: number;
  /** Downscale JPEGs wider than this (keeps the aspect ratio): `jpegWidth`, or the older `max-width` camera key. */
  maxWidth?: number;
  /** mjpeg's Huffman tables (`jpegTables`): standard (less CPU) or optimal (smaller files). */
  jpegTables?: 'standard' | 'optimal';
  /**
   * The camera's lower-resolution stream (sub-stream): frames are taken from it, and the
   * camera's own url is not opened by capture (it stays the camera's identity, for
   * recorders and live view, which read the full stream themselves).
   */
  detect?: { url: string; kind: CameraKind };
  /** Decode on this device (resolved once at start-up by resolveHwaccel). */
  hwaccel?: HwaccelChoice;
  ffmpegOptions: Record<string, string>;
  /** Files: start over at the end (default true). */
  loop: boolean;
  /** Frame priority 0-9 on the captured stream. */
  priority: number;
  /** Capabilities the frames ask for (empty: every registered one). */
  capabilities: string[];
}

/** What a camera's own entry sets; the rest comes from the command's settings. */
export type CameraOverrides = Partial<Omit<CameraSettings, 'validation'>> & { validation?: Partial<ValidationOptions> };

export interface CameraConfig extends CameraSpec {
  settings?: CameraOverrides;
}

export const DEFAULT_CAMERA_SETTINGS: CameraSettings = {
  fps: 5,
  jpegQuality: 80,
  transport: 'tcp',
  timeoutMs: 5000,
  stallTimeoutMs: 10_000,
  validation: DEFAULT_VALIDATION,
  thumbnailWidth: 0,
  ffmpegOptions: {},
  loop: true,
  priority: 5,
  capabilities: [],
};

type Parse = (name: string, raw: unknown) => CameraOverrides;

const typed = (spec: Omit<KeySpec, 'description'>) => (name: string, raw: unknown) => parseValue(name, { ...spec, description: '' }, raw);

const CAMERA_KEYS: Record<string, Parse> = {
  fps: (n, r) => ({ fps: typed({ type: 'number', min: 0.01, max: 120 })(n, r) as number }),
  jpegQuality: (n, r) => ({ jpegQuality: typed({ type: 'int', min: 1, max: 100 })(n, r) as number }),
  transport: (n, r) => ({ transport: parseTransport(n, r) }),
  timeout: (n, r) => ({ timeoutMs: typed({ type: 'duration', min: 100, max: 600_000 })(n, r) as number }),
  stallTimeout: (n, r) => ({ stallTimeoutMs: typed({ type: 'duration', min: 100, max: 3_600_000 })(n, r) as number }),
  invalidFrames: (n, r) => ({ validation: { policy: parsePolicy(String(typed({ type: 'string' })(n, r)), n) } }),
  frozenAfter: (n, r) => ({ validation: { frozenAfterMs: typed({ type: 'duration', min: 100 })(n, r) as number } }),
  thumbnailWidth: (n, r) => ({ thumbnailWidth: parseThumbnailWidth(n, r) }),
  maxWidth: (n, r) => ({ maxWidth: typed({ type: 'int', min: 16, max: 16384 })(n, r) as number }),
  jpegWidth: (n, r) => ({ maxWidth: parseJpegWidth(n, r) }),
  detectUrl: (n, r) => ({ detect: parseDetectUrl(n, r) }),
  ffmpegOptions: (n, r) => ({ ffmpegOptions: parseFfmpegOptions(n, r) }),
  loop: (n, r) => ({ loop: typed({ type: 'bool' })(n, r) as boolean }),
  priority: (n, r) => ({ priority: typed({ type: 'int', min: 0, max: 9 })(n, r) as number }),
  capabilities: (n, r) => ({ capabilities: typed({ type: 'list' })(n, r) as string[] }),
};

/** The keys a camera's entry in the config file may set (besides id and url). */
export const CAMERA_KEY_NAMES = Object.keys(CAMERA_KEYS);

const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function parseTransport(name: string, raw: unknown): 'tcp' | 'udp' {
  const v = typeof raw === 'string' ? raw.trim().toLowerCase() : raw;
  if (v !== 'tcp' && v !== 'udp') throw new InvalidInputError(`${name}: "${String(raw)}" must be tcp or udp`);
  return v;
}

export function parseThumbnailWidth(name: string, raw: unknown): number {
  const n = typed({ type: 'int', min: 0, max: 1920 })(name, raw) as number;
  if (n !== 0 && n < 8) throw new InvalidInputError(`${name}: "${String(raw)}" must be 0 (no thumbnail) or 8..1920`);
  return n;
}

/** 0 (full resolution: undefined) or a width of 16..16384. */
export function parseJpegWidth(name: string, raw: unknown): number | undefined {
  const n = typed({ type: 'int', min: 0, max: 16384 })(name, raw) as number;
  if (n !== 0 && n < 16) throw new InvalidInputError(`${name}: "${String(raw)}" must be 0 (full resolution) or 16..16384`);
  return n || undefined;
}

/** A sub-stream url: the same forms as a camera url (rtsp://, file, lavfi:); messages carry it redacted. */
export function parseDetectUrl(name: string, raw: unknown): { url: string; kind: CameraKind } {
  if (typeof raw !== 'string') throw new InvalidInputError(`${name}: must be a url (rtsp://, a file, lavfi:<graph>)`);
  try {
    const { url, kind } = parseCameraSpec(`detect=${raw}`);
    return { url, kind };
  } catch (err) {
    throw new InvalidInputError(`${name}: ${(err as Error).message.replace(/^Camera "detect"(: )?/, '')}`);
  }
}

/**
 * `id=url` sub-streams (--detect-url, DETEKTR_DETECT_URLS, config `detectUrls`) onto the
 * cameras they name; an id that is not a camera, or given twice, is an error naming it.
 */
export function withDetectUrls(cameras: CameraConfig[], specs: string[], what = '--detect-url'): CameraConfig[] {
  const byId = new Map<string, { url: string; kind: CameraKind }>();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const id = eq > 0 ? spec.slice(0, eq) : '';
    if (!id) throw new InvalidInputError(`${what}: "${redactUrl(spec)}" must be id=url, e.g. front=rtsp://cam/sub`);
    if (!cameras.some((c) => c.id === id)) {
      throw new InvalidInputError(`${what}: no camera "${id}" (cameras: ${cameras.map((c) => c.id).join(', ') || 'none'})`);
    }
    if (byId.has(id)) throw new InvalidInputError(`${what}: camera "${id}" is given twice`);
    byId.set(id, parseDetectUrl(`${what} ${id}`, spec.slice(eq + 1)));
  }
  return cameras.map((c) => {
    const detect = byId.get(c.id);
    return detect ? { ...c, settings: { ...c.settings, detect } } : c;
  });
}

/** `key=value` strings (flags) or a mapping (config file) of FFmpeg demuxer/protocol options. */
export function parseFfmpegOptions(name: string, raw: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const put = (k: string, v: unknown) => {
    if (!/^[A-Za-z0-9_]{1,64}$/.test(k)) throw new InvalidInputError(`${name}: option name "${k}" must be letters, digits or _`);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new InvalidInputError(`${name}: option "${k}" needs a string or number value`);
    }
    out[k] = String(v);
  };
  if (Array.isArray(raw)) {
    for (const item of raw) {
      const s = String(item);
      const eq = s.indexOf('=');
      if (eq <= 0) throw new InvalidInputError(`${name}: "${s}" must be key=value (e.g. buffer_size=1048576)`);
      put(s.slice(0, eq).trim(), s.slice(eq + 1).trim());
    }
  } else if (raw && typeof raw === 'object') {
    for (const [k, v] of Object.entries(raw)) put(k, v);
  } else {
    throw new InvalidInputError(`${name}: must be a mapping of FFmpeg option names to values`);
  }
  return out;
}

/** Settings of one config-file camera entry; throws InvalidInputError naming the key. */
export function parseCameraSettings(where: string, raw: Record<string, unknown>): CameraOverrides {
  let settings: CameraOverrides = {};
  for (const [key, value] of Object.entries(raw)) {
    const parse = CAMERA_KEYS[camel(key)];
    if (!parse) {
      throw new InvalidInputError(`${where}: unknown camera key "${key}" (known: id, url, ${Object.keys(CAMERA_KEYS).join(', ')})`);
    }
    const part = parse(`${where}.${key}`, value);
    settings = { ...settings, ...part, validation: part.validation ? { ...settings.validation, ...part.validation } : settings.validation };
  }
  if (!settings.validation) delete settings.validation;
  return settings;
}

/**
 * Cameras from `id=url` specs plus the config file's per-camera keys; ids must be unique.
 * `perCamera` is keyed by camera id (see Config.cameraOptions).
 */
export function cameraConfigs(specs: string[], perCamera: Record<string, Record<string, unknown>> = {}, what = '--camera'): CameraConfig[] {
  const ids = new Set<string>();
  return specs.map((s) => {
    const spec = parseCameraSpec(s);
    if (ids.has(spec.id)) throw new InvalidInputError(`${what}: camera id "${spec.id}" is given twice`);
    ids.add(spec.id);
    const raw = perCamera[spec.id];
    return raw && Object.keys(raw).length ? { ...spec, settings: parseCameraSettings(`cameras[${spec.id}]`, raw) } : spec;
  });
}

/** A camera's effective settings: its own over the command's. */
export function effectiveSettings(camera: CameraConfig, defaults: CameraSettings): CameraSettings {
  const own = camera.settings ?? {};
  return {
    ...defaults,
    ...own,
    validation: { ...defaults.validation, ...own.validation },
    ffmpegOptions: { ...defaults.ffmpegOptions, ...own.ffmpegOptions },
  };
}
