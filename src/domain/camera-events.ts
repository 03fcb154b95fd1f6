import { newEventId } from './frame-id.js';

/**
 * Camera lifecycle, on the same events stream as frame events and stored beside them, so
 * an operator sees that a camera went offline or froze next to the frames it did not send.
 */
export const CAMERA_EVENT_TYPES = ['camera.online', 'camera.offline', 'camera.frozen'] as const;
export type CameraEventType = (typeof CAMERA_EVENT_TYPES)[number];

export interface CameraEvent {
  eventId: string;
  type: CameraEventType;
  cameraId: string;
  /** ms since epoch */
  at: number;
  source: string;
  /** offline: why (timeout, refused, ended...); frozen: for how long. Never holds a password. */
  reason?: string;
  data?: Record<string, unknown>;
}

export function makeCameraEvent(e: Omit<CameraEvent, 'eventId' | 'at'> & { at?: number }): CameraEvent {
  return { ...e, eventId: newEventId(), at: e.at ?? Date.now() };
}

export function isCameraEventType(type: string): type is CameraEventType {
  return (CAMERA_EVENT_TYPES as readonly string[]).includes(type);
}
