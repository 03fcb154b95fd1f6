/**
 * Hardware decoding (`hwaccel`: none | vaapi | cuda | qsv | auto; none by default).
 *
 * A device is probed by opening it (and freeing it again), which is what decoding needs:
 * FFmpeg's build lists every type it was compiled with, whether or not this machine has
 * the device or driver. Decisions (docs/architecture.md, Capture):
 * - `none`: software decoding, nothing probed.
 * - a named type that does not open: capture refuses to start (InvalidInputError naming
 *   the setting and FFmpeg's reason): asking for a GPU and silently getting the CPU would
 *   hide a capacity problem.
 * - `auto`: the first of cuda, vaapi, qsv that opens; when none does, software decoding,
 *   said in the result (`note`), which capture logs and `validate` prints.
 * - a camera whose codec the device cannot decode decodes in software; its status
 *   (`/cameras` stream.decode) says so, as does the reader's open info.
 * Frames decoded on the device are copied back to memory (NV12) for checks and JPEG.
 */
import './node-av-polyfill.js';
import {
  AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX,
  AV_HWDEVICE_TYPE_CUDA,
  AV_HWDEVICE_TYPE_QSV,
  AV_HWDEVICE_TYPE_VAAPI,
  AV_LOG_QUIET,
  type AVHWDeviceType,
  type AVPixelFormat,
} from 'node-av/constants';
import { type Codec, FFmpegError, HardwareDeviceContext, Log } from 'node-av/lib';
import { InvalidInputError } from '../domain/errors.js';

export const HWACCEL_SETTINGS = ['none', 'vaapi', 'cuda', 'qsv', 'auto'] as const;
export type HwaccelSetting = (typeof HWACCEL_SETTINGS)[number];
export type HwaccelType = Exclude<HwaccelSetting, 'none' | 'auto'>;
/** What the reader is told to use: a concrete type, or none. */
export type HwaccelChoice = HwaccelType | 'none';

/** auto tries these in order. */
export const HWACCEL_TYPES: readonly HwaccelType[] = ['cuda', 'vaapi', 'qsv'];

const DEVICE_TYPE: Record<HwaccelType, AVHWDeviceType> = {
  cuda: AV_HWDEVICE_TYPE_CUDA,
  vaapi: AV_HWDEVICE_TYPE_VAAPI,
  qsv: AV_HWDEVICE_TYPE_QSV,
};

const NEEDS: Record<HwaccelType, string> = {
  cuda: 'an NVIDIA GPU and driver (libcuda.so.1)',
  vaapi: 'a VA-API render node (/dev/dri/renderD*) and its driver',
  qsv: 'an Intel GPU with oneVPL / Media SDK',
};

export interface HwaccelProbe {
  type: HwaccelType;
  available: boolean;
  /** Why not, when not. */
  error?: string;
}

export interface ResolvedHwaccel {
  setting: HwaccelSetting;
  chosen: HwaccelChoice;
  probes: HwaccelProbe[];
  /** A fallback worth saying (auto found nothing). */
  note?: string;
}

/** Opens the device (then frees it); FFmpeg's own complaints are kept off stderr while it tries. */
export function probeHwaccel(type: HwaccelType): HwaccelProbe {
  const device = openDevice(type);
  if (typeof device === 'string') return { type, available: false, error: device };
  device.free();
  return { type, available: true };
}

/** The device, or why it did not open. */
export function openDevice(type: HwaccelType): HardwareDeviceContext | string {
  const device = new HardwareDeviceContext();
  const level = Log.getLevel();
  Log.setLevel(AV_LOG_QUIET);
  let ret: number;
  try {
    ret = device.create(DEVICE_TYPE[type], null, null);
  } finally {
    Log.setLevel(level);
  }
  if (ret >= 0) return device;
  device.free();
  return `cannot open a ${type} device (${FFmpegError.strerror(ret)}; it needs ${NEEDS[type]})`;
}

/**
 * The type to decode with for `setting`. Throws InvalidInputError (naming `name`) when a
 * named type does not open on this machine.
 */
export function resolveHwaccel(setting: string, name = 'hwaccel'): ResolvedHwaccel {
  if (!(HWACCEL_SETTINGS as readonly string[]).includes(setting)) {
    throw new InvalidInputError(`${name}: "${setting}" must be one of ${HWACCEL_SETTINGS.join(', ')}`);
  }
  const s = setting as HwaccelSetting;
  if (s === 'none') return { setting: s, chosen: 'none', probes: [] };
  if (s !== 'auto') {
    const probe = probeHwaccel(s);
    if (!probe.available) {
      throw new InvalidInputError(`${name}: "${s}" is not available on this machine: ${probe.error} (use ${name} none or auto)`);
    }
    return { setting: s, chosen: s, probes: [probe] };
  }
  const probes: HwaccelProbe[] = [];
  for (const type of HWACCEL_TYPES) {
    const probe = probeHwaccel(type);
    probes.push(probe);
    if (probe.available) return { setting: s, chosen: type, probes };
  }
  return { setting: s, chosen: 'none', probes, note: `auto: no hardware decoder available (${describe(probes)}), decoding in software` };
}

/** The pixel format `codec` decodes to on a device of `type`, or undefined when it cannot. */
export function hwPixelFormat(codec: Codec, type: HwaccelType): AVPixelFormat | undefined {
  const wanted = DEVICE_TYPE[type];
  for (let i = 0; ; i++) {
    const config = codec.getHwConfig(i);
    if (!config) return undefined;
    if (config.deviceType === wanted && (config.methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX) !== 0) return config.pixFmt;
  }
}

function describe(probes: HwaccelProbe[]): string {
  return probes.map((p) => (p.available ? `${p.type}: available` : `${p.type}: ${p.error}`)).join('; ');
}

/** One line for `validate`: `<chosen> (setting <s>; <each type: available or why not>)`. */
export function hwaccelReport(setting: string): { status: 'ok' | 'fail'; detail: string } {
  let resolved: ResolvedHwaccel;
  try {
    resolved = resolveHwaccel(setting);
  } catch (err) {
    return { status: 'fail', detail: (err as Error).message };
  }
  const probes = resolved.probes.length ? resolved.probes : HWACCEL_TYPES.map(probeHwaccel);
  const available = probes.filter((p) => p.available).map((p) => p.type);
  return {
    status: 'ok',
    detail: `${resolved.chosen} (setting ${setting}; available: ${available.join(', ') || 'none'}; ${describe(probes)})`,
  };
}
