/**
 * The `jpegEncoder` setting: auto (the default) | turbojpeg | mjpeg. Decisions
 * (docs/architecture.md, Capture):
 * - `auto`: libjpeg-turbo when its library loads here (turbojpeg.ts), else FFmpeg's mjpeg,
 *   said in the result (`note`), which capture logs and `validate` prints. The JPEGs are
 *   correct either way; only the CPU per frame (and quality scale) differ.
 * - `turbojpeg` that does not load: capture refuses to start (InvalidInputError naming the
 *   setting and the reason), as a named hwaccel does.
 * - `mjpeg`: FFmpeg's encoder; nothing else is loaded.
 */
import { InvalidInputError } from '../domain/errors.js';
import { loadTurboJpeg } from './turbojpeg.js';

export const JPEG_ENCODER_SETTINGS = ['auto', 'turbojpeg', 'mjpeg'] as const;
export type JpegEncoderSetting = (typeof JPEG_ENCODER_SETTINGS)[number];
/** What the reader is told to use. */
export type JpegEncoderChoice = Exclude<JpegEncoderSetting, 'auto'>;

export interface ResolvedJpegEncoder {
  setting: JpegEncoderSetting;
  chosen: JpegEncoderChoice;
  /** The library turbojpeg uses (when chosen). */
  library?: string;
  /** A fallback worth saying (auto could not load libturbojpeg), or why turbojpeg is not usable. */
  note?: string;
}

/**
 * The encoder for `setting`; `library` is the `turbojpegLibrary` setting (empty: the bundled
 * one). Throws InvalidInputError naming `name` when turbojpeg is asked for and cannot load.
 */
export function resolveJpegEncoder(setting: string, library = '', name = 'jpegEncoder'): ResolvedJpegEncoder {
  if (!(JPEG_ENCODER_SETTINGS as readonly string[]).includes(setting)) {
    throw new InvalidInputError(`${name}: "${setting}" must be one of ${JPEG_ENCODER_SETTINGS.join(', ')}`);
  }
  const s = setting as JpegEncoderSetting;
  if (s === 'mjpeg') return { setting: s, chosen: 'mjpeg' };
  const lib = loadTurboJpeg(library || undefined);
  if (typeof lib !== 'string') return { setting: s, chosen: 'turbojpeg', library: lib.path };
  if (s === 'turbojpeg') throw new InvalidInputError(`${name}: turbojpeg is not available: ${lib} (use ${name} auto or mjpeg)`);
  return { setting: s, chosen: 'mjpeg', note: `auto: libjpeg-turbo is not available (${lib}), encoding with FFmpeg's mjpeg` };
}

/** One line for `validate`: `<chosen> (setting <s>; <library or why not>)`. */
export function jpegEncoderReport(setting: string, library = ''): { status: 'ok' | 'fail'; detail: string } {
  let r: ResolvedJpegEncoder;
  try {
    r = resolveJpegEncoder(setting, library);
  } catch (err) {
    return { status: 'fail', detail: (err as Error).message };
  }
  const why = r.library ? `libturbojpeg ${r.library}` : (r.note ?? 'FFmpeg mjpeg');
  return { status: 'ok', detail: `${r.chosen} (setting ${setting}; ${why})` };
}
