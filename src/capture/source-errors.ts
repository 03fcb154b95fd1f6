import { constants as osConstants } from 'node:os';
import { ConnectionError, TimeoutError } from '../domain/errors.js';

/** Why a camera is not delivering frames: the `reason` of camera.offline and of log lines. */
export type FailureReason =
  | 'unauthorized'
  | 'not_found'
  | 'host_not_found'
  | 'not_video'
  | 'invalid_source'
  | 'refused'
  | 'unreachable'
  | 'timeout'
  | 'stalled'
  | 'ended'
  | 'server_error'
  | 'error';

export type SourceStage = 'open' | 'read';

export interface SourceErrorOptions {
  code?: number;
  stage?: SourceStage;
  reason?: FailureReason;
  cause?: unknown;
}

/** A camera source failure, with FFmpeg's AVERROR code when there is one. Messages hold redacted urls only. */
export class SourceError extends ConnectionError {
  readonly code?: number;
  readonly stage?: SourceStage;
  readonly reason?: FailureReason;

  constructor(message: string, opts: SourceErrorOptions = {}) {
    super(message, { cause: opts.cause });
    this.code = opts.code;
    this.stage = opts.stage;
    this.reason = opts.reason;
  }
}

/** A source that did not answer in time: an open or a read past its deadline, or no frame for too long. */
export class SourceTimeoutError extends TimeoutError {
  readonly code?: number;
  readonly stage?: SourceStage;
  readonly reason: FailureReason;

  constructor(message: string, opts: SourceErrorOptions = {}) {
    super(message, { cause: opts.cause });
    this.code = opts.code;
    this.stage = opts.stage;
    this.reason = opts.reason ?? 'timeout';
  }
}

const E = osConstants.errno;
// AVERROR(e) is -e on Linux; FFERRTAG codes, as FFmpeg defines them.
const tag = (a: string, b: string, c: string, d: string) =>
  -(a.charCodeAt(0) | (b.charCodeAt(0) << 8) | (c.charCodeAt(0) << 16) | (d.charCodeAt(0) << 24));
export const AV = {
  EOF: tag('E', 'O', 'F', ' '),
  INVALIDDATA: tag('I', 'N', 'D', 'A'),
  HTTP_BAD_REQUEST: tag(String.fromCharCode(0xf8), '4', '0', '0'),
  HTTP_UNAUTHORIZED: tag(String.fromCharCode(0xf8), '4', '0', '1'),
  HTTP_FORBIDDEN: tag(String.fromCharCode(0xf8), '4', '0', '3'),
  HTTP_NOT_FOUND: tag(String.fromCharCode(0xf8), '4', '0', '4'),
  HTTP_OTHER_4XX: tag(String.fromCharCode(0xf8), '4', 'X', 'X'),
  HTTP_SERVER_ERROR: tag(String.fromCharCode(0xf8), '5', 'X', 'X'),
  ETIMEDOUT: -E.ETIMEDOUT,
  ECONNREFUSED: -E.ECONNREFUSED,
  ENOENT: -E.ENOENT,
  EIO: -E.EIO,
} as const;

const TRANSIENT = new Map<number, FailureReason>([
  [-E.ECONNREFUSED, 'refused'],
  [-E.ECONNRESET, 'ended'],
  [-E.EPIPE, 'ended'],
  [-E.EHOSTUNREACH, 'unreachable'],
  [-E.ENETUNREACH, 'unreachable'],
  [-E.ENETDOWN, 'unreachable'],
  [-E.ETIMEDOUT, 'timeout'],
  [-E.EAGAIN, 'timeout'],
  [-E.EIO, 'error'],
  [AV.EOF, 'ended'],
  [AV.HTTP_SERVER_ERROR, 'server_error'],
]);

const PERMANENT = new Map<number, FailureReason>([
  [AV.HTTP_UNAUTHORIZED, 'unauthorized'],
  [AV.HTTP_FORBIDDEN, 'unauthorized'],
  [AV.HTTP_NOT_FOUND, 'not_found'],
  [-E.ENOENT, 'not_found'],
  [AV.INVALIDDATA, 'not_video'],
]);

/**
 * Why a source failed, and whether retrying can help without someone changing something
 * (credentials, path, url). Only failures to open can be permanent: a stream that was
 * readable and then failed is worth reconnecting to.
 */
export function classifyFailure(err: unknown): { reason: FailureReason; permanent: boolean } {
  if (err instanceof SourceTimeoutError) return { reason: err.reason, permanent: false };
  if (err instanceof TimeoutError) return { reason: 'timeout', permanent: false };
  if (!(err instanceof SourceError)) return { reason: 'error', permanent: false };
  const opening = err.stage === 'open';
  if (err.reason) return { reason: err.reason, permanent: opening && isPermanentReason(err.reason) };
  const code = err.code;
  if (code !== undefined && TRANSIENT.has(code)) return { reason: TRANSIENT.get(code)!, permanent: false };
  if (code !== undefined && PERMANENT.has(code)) return { reason: PERMANENT.get(code)!, permanent: opening };
  // Any other failure to open (a bad lavfi graph, an unsupported option) needs a fix, not a retry.
  return { reason: opening ? 'invalid_source' : 'error', permanent: opening };
}

function isPermanentReason(r: FailureReason): boolean {
  return r === 'unauthorized' || r === 'not_found' || r === 'host_not_found' || r === 'not_video' || r === 'invalid_source';
}

/** Plain data for crossing the worker boundary. */
export interface SerializedError {
  name: string;
  message: string;
  code?: number;
  stage?: SourceStage;
  reason?: FailureReason;
  cause?: string;
}

export function serializeError(err: unknown): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as Error & Partial<SourceErrorOptions>;
  return {
    name: e.name,
    message: e.message,
    code: typeof e.code === 'number' ? e.code : undefined,
    stage: e.stage,
    reason: e.reason,
    cause: e.cause instanceof Error ? e.cause.message : e.cause === undefined ? undefined : String(e.cause),
  };
}

export function deserializeError(s: SerializedError): SourceError | SourceTimeoutError {
  const opts: SourceErrorOptions = {
    code: s.code,
    stage: s.stage,
    reason: s.reason,
    cause: s.cause === undefined ? undefined : new Error(s.cause),
  };
  return s.name === 'SourceTimeoutError' || s.name === 'TimeoutError'
    ? new SourceTimeoutError(s.message, opts)
    : new SourceError(s.message, opts);
}
