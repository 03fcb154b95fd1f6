import { redactUrl } from '../config/redact.js';
import type { CameraConfig } from './camera-config.js';
import type { FailureReason } from './source-errors.js';
import type { OpenInfo } from './video-source.js';

export type CameraState = 'connecting' | 'online' | 'offline' | 'failed' | 'stopped';

/** What an operator (and /readyz, /cameras) sees of a camera; never holds a password. */
export interface CameraStatus {
  id: string;
  /** The url with its password masked. */
  url: string;
  state: CameraState;
  online: boolean;
  frozen: boolean;
  captured: number;
  published: number;
  dropped: number;
  /** Reconnect attempts since start. */
  reconnects: number;
  /** Failures in a row (the backoff exponent); reset after a healthy period. */
  failures: number;
  lastFrameAt?: number;
  /**
   * How far behind the camera's clock frames are handled: wall time minus stream time,
   * above the smallest value seen this session. Grows when the host cannot keep up.
   */
  lagMs?: number;
  onlineSince?: number;
  offlineSince?: number;
  lastError?: string;
  lastErrorReason?: FailureReason;
  /** Current backoff ceiling and the delay drawn from it (full jitter). */
  backoffCeilingMs?: number;
  nextRetryInMs?: number;
  stream?: OpenInfo;
}

/** A camera before its first open: connecting, offline since now. */
export function initialStatus(camera: CameraConfig): CameraStatus {
  return {
    id: camera.id,
    url: camera.kind === 'lavfi' ? `lavfi:${camera.url}` : redactUrl(camera.url),
    state: 'connecting',
    online: false,
    frozen: false,
    captured: 0,
    published: 0,
    dropped: 0,
    reconnects: 0,
    failures: 0,
    offlineSince: Date.now(),
  };
}

/** Ready while every camera is online or has been offline for less than the grace period. */
export function cameraReadiness(
  statuses: Iterable<CameraStatus>,
  graceMs: number,
  now = Date.now(),
): { ready: boolean; checks: Record<string, string> } {
  const checks: Record<string, string> = {};
  let ready = true;
  for (const s of statuses) {
    if (s.online) {
      checks[`camera:${s.id}`] = s.frozen ? 'online (frozen)' : 'online';
      continue;
    }
    const offlineMs = now - (s.offlineSince ?? now);
    if (s.state === 'failed' || offlineMs >= graceMs) ready = false;
    const why = s.lastError ? `: ${s.lastError}` : '';
    checks[`camera:${s.id}`] = `${s.state} for ${Math.round(offlineMs / 1000)}s${why}`;
  }
  return { ready, checks };
}
