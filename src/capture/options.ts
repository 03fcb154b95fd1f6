import { shardSetOf } from '../bus/shards.js';
import type { Config } from '../config/load-config.js';
import { InvalidInputError } from '../domain/errors.js';
import { cameraConfigs, withDetectUrls } from './camera-config.js';
import type { CaptureOptions } from './capture-service.js';
import { DEFAULT_VALIDATION, parsePolicy } from './frame-check.js';
import { resolveHwaccel } from './hwaccel.js';

/** What the host provides: connections and telemetry. */
export type CaptureDeps = Pick<CaptureOptions, 'redis' | 'shards' | 'tracer' | 'metrics' | 'logger'>;

export interface CaptureExtras {
  /** Where config.cameras came from, for errors naming a bad camera (--camera, or the config file's cameras). */
  camerasFrom: string;
  maxFrames?: number;
  /** FFmpeg options for every camera (`capture --ffmpeg-option`); a camera's own ffmpeg-options win. */
  ffmpegOptions?: Record<string, string>;
  /** Where config.detectUrls / config.hwaccel came from, for their errors (default: the config key). */
  detectUrlsFrom?: string;
  hwaccelFrom?: string;
}

/**
 * The CaptureService options for a loaded config: the one translation `detektr capture`
 * and `detektr run` share, so every capture key and every per-camera setting of the config
 * file means the same under both. Validates at once (bad input: exit 2 before anything
 * starts); the returned function adds the host's connections.
 */
export function captureOptions(config: Config, extras: CaptureExtras): (deps: CaptureDeps) => CaptureOptions {
  const cameras = withDetectUrls(
    cameraConfigs(config.cameras, config.cameraOptions, extras.camerasFrom),
    config.detectUrls,
    extras.detectUrlsFrom ?? 'detectUrls',
  );
  if (config.jpegWidth !== 0 && config.jpegWidth < 16) {
    throw new InvalidInputError(`--jpeg-width "${config.jpegWidth}" must be 0 (full resolution) or 16..16384`);
  }
  // A GPU asked for but not there stops here (exit 2), before any camera opens.
  const hwaccel = resolveHwaccel(config.hwaccel, extras.hwaccelFrom ?? 'hwaccel');
  if (config.thumbnailWidth !== 0 && config.thumbnailWidth < 8) {
    throw new InvalidInputError(`--thumbnail-width "${config.thumbnailWidth}" must be 0 (no thumbnail) or 8..1920`);
  }
  const policy = parsePolicy(config.invalidFrames, '--invalid-frames');
  const pinned = shardSetOf(config).layout.pinned ?? new Map<string, number>();
  for (const id of pinned.keys()) {
    if (!cameras.some((c) => c.id === id))
      throw new InvalidInputError(`cameraShards: no camera "${id}" (cameras: ${cameras.map((c) => c.id).join(', ') || 'none'})`);
  }
  return (deps) => {
    if (hwaccel.note) deps.logger.warn('hwaccel', { hwaccel: hwaccel.chosen, note: hwaccel.note });
    else if (hwaccel.chosen !== 'none') deps.logger.info('hwaccel', { hwaccel: hwaccel.chosen, setting: hwaccel.setting });
    return {
      ...deps,
      cameras,
      fps: config.fps,
      jpegQuality: config.jpegQuality,
      payloadTtlMs: config.payloadTtl,
      streamMaxLen: config.streamMaxLen,
      maxFrames: extras.maxFrames,
      settings: {
        transport: config.rtspTransport,
        timeoutMs: config.cameraTimeout,
        stallTimeoutMs: config.stallTimeout,
        thumbnailWidth: config.thumbnailWidth,
        maxWidth: config.jpegWidth || undefined,
        jpegTables: config.jpegTables,
        hwaccel: hwaccel.chosen,
        ffmpegOptions: extras.ffmpegOptions ?? {},
        validation: { ...DEFAULT_VALIDATION, policy, frozenAfterMs: config.frozenAfter },
      },
      reconnect: { maxMs: config.reconnectMax },
      offlineGraceMs: config.offlineGrace,
    };
  };
}
