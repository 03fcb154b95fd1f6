import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as C from 'node-av/constants';
import { describe, expect, it } from 'vitest';
import {
  cameraConfigs,
  DEFAULT_CAMERA_SETTINGS,
  effectiveSettings,
  parseCameraSettings,
  parseFfmpegOptions,
} from '../../src/capture/camera-config.js';
import { AV, classifyFailure, deserializeError, serializeError, SourceError, SourceTimeoutError } from '../../src/capture/source-errors.js';
import { loadConfig } from '../../src/config/load-config.js';
import { InvalidInputError, TimeoutError } from '../../src/domain/errors.js';

function configFile(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'detektr-cam-config-')), 'detektr.yml');
  writeFileSync(path, text);
  return path;
}

describe('camera settings from the config file', () => {
  const yaml = [
    'cameras:',
    '  - front=testsrc',
    '  - id: yard',
    '    url: rtsp://admin:s3cret@192.0.2.10:554/stream',
    '    fps: 2',
    '    transport: udp',
    '    timeout: 3s',
    '    stall-timeout: 20s',
    '    invalid-frames: black=drop',
    '    frozen-after: 30s',
    '    thumbnail-width: 160',
    '    ffmpeg-options: { buffer_size: 1048576, reorder_queue_size: "0" }',
    '',
  ].join('\n');

  it('keeps the cameras as id=url and collects per-camera keys by id', () => {
    const { config } = loadConfig({ env: {}, configPath: configFile(yaml) });
    expect(config.cameras).toEqual(['front=testsrc', 'yard=rtsp://admin:s3cret@192.0.2.10:554/stream']);
    expect(Object.keys(config.cameraOptions ?? {})).toEqual(['yard']);
    const [front, yard] = cameraConfigs(config.cameras, config.cameraOptions);
    expect(front.settings).toBeUndefined();
    expect(yard).toMatchObject({ id: 'yard', kind: 'rtsp' });
    expect(yard.settings).toEqual({
      fps: 2,
      transport: 'udp',
      timeoutMs: 3000,
      stallTimeoutMs: 20_000,
      validation: { policy: { corrupt: 'drop', black: 'drop', frozen: 'flag' }, frozenAfterMs: 30_000 },
      thumbnailWidth: 160,
      ffmpegOptions: { buffer_size: '1048576', reorder_queue_size: '0' },
    });
  });

  it("lays a camera's own settings over the command's", () => {
    const { config } = loadConfig({ env: {}, configPath: configFile(yaml) });
    const [front, yard] = cameraConfigs(config.cameras, config.cameraOptions);
    const defaults = { ...DEFAULT_CAMERA_SETTINGS, fps: 10, timeoutMs: 4000, ffmpegOptions: { max_delay: '500000' } };
    expect(effectiveSettings(front, defaults)).toEqual(defaults);
    const y = effectiveSettings(yard, defaults);
    expect(y.fps).toBe(2);
    expect(y.timeoutMs).toBe(3000);
    expect(y.validation).toEqual({
      ...DEFAULT_CAMERA_SETTINGS.validation,
      policy: { corrupt: 'drop', black: 'drop', frozen: 'flag' },
      frozenAfterMs: 30_000,
    });
    expect(y.ffmpegOptions).toEqual({ max_delay: '500000', buffer_size: '1048576', reorder_queue_size: '0' });
  });

  it('ignores file camera settings when the cameras come from flags', () => {
    const { config } = loadConfig({ env: {}, configPath: configFile(yaml), flags: { cameras: ['yard=testsrc'] } });
    expect(config.cameraOptions).toBeUndefined();
  });

  it('reads the capture keys from flags, environment and file', () => {
    const path = configFile('camera-timeout: 2s\nrtsp-transport: udp\ninvalid-frames: drop\n');
    const { config } = loadConfig({ env: { DETEKTR_STALL_TIMEOUT: '4s' }, configPath: path, flags: { offlineGrace: '1m' } });
    expect(config).toMatchObject({
      cameraTimeout: 2000,
      rtspTransport: 'udp',
      invalidFrames: 'drop',
      stallTimeout: 4000,
      offlineGrace: 60_000,
      frozenAfter: 10_000,
      thumbnailWidth: 0,
      reconnectMax: 30_000,
    });
    expect(() => loadConfig({ env: { DETEKTR_RTSP_TRANSPORT: 'sctp' }, cwd: '/x' })).toThrow(
      'DETEKTR_RTSP_TRANSPORT: "sctp" must be one of tcp, udp',
    );
  });

  it.each([
    [{ fps: 'fast' }, /cameras\[cam\]\.fps: "fast" is not a number/],
    [{ fps: 500 }, /cameras\[cam\]\.fps: "500" is out of range/],
    [{ transport: 'sctp' }, /cameras\[cam\]\.transport: "sctp" must be tcp or udp/],
    [{ timeout: 'soon' }, /cameras\[cam\]\.timeout: "soon" is not a duration/],
    [{ 'invalid-frames': 'maybe' }, /cameras\[cam\]\.invalid-frames "maybe"/],
    [{ 'thumbnail-width': 4 }, /must be 0 \(no thumbnail\) or 8\.\.1920/],
    [{ ffmpegOptions: 'x' }, /must be a mapping/],
    [{ ffmpegOptions: { 'bad key': 1 } }, /option name "bad key"/],
    [{ colour: 'red' }, /unknown camera key "colour"/],
  ])('rejects %j naming the key', (raw, message) => {
    expect(() => parseCameraSettings('cameras[cam]', raw as Record<string, unknown>)).toThrow(InvalidInputError);
    expect(() => parseCameraSettings('cameras[cam]', raw as Record<string, unknown>)).toThrow(message);
  });

  it('rejects a camera id given twice', () => {
    expect(() => cameraConfigs(['a=testsrc', 'a=testsrc'])).toThrow('camera id "a" is given twice');
  });

  it('parses --ffmpeg-option key=value lists', () => {
    expect(parseFfmpegOptions('--ffmpeg-option', ['buffer_size=1048576', 'max_delay = 0'])).toEqual({
      buffer_size: '1048576',
      max_delay: '0',
    });
    expect(() => parseFfmpegOptions('--ffmpeg-option', ['novalue'])).toThrow('--ffmpeg-option: "novalue" must be key=value');
  });
});

describe('classifyFailure', () => {
  it("uses FFmpeg's own error codes", () => {
    expect(AV).toMatchObject({
      EOF: C.AVERROR_EOF,
      INVALIDDATA: C.AVERROR_INVALIDDATA,
      HTTP_UNAUTHORIZED: C.AVERROR_HTTP_UNAUTHORIZED,
      HTTP_FORBIDDEN: C.AVERROR_HTTP_FORBIDDEN,
      HTTP_NOT_FOUND: C.AVERROR_HTTP_NOT_FOUND,
      HTTP_SERVER_ERROR: C.AVERROR_HTTP_SERVER_ERROR,
    });
  });

  it.each([
    [AV.HTTP_UNAUTHORIZED, 'open', 'unauthorized', true],
    [AV.HTTP_FORBIDDEN, 'open', 'unauthorized', true],
    [AV.HTTP_NOT_FOUND, 'open', 'not_found', true],
    [AV.ENOENT, 'open', 'not_found', true],
    [AV.INVALIDDATA, 'open', 'not_video', true],
    [AV.INVALIDDATA, 'read', 'not_video', false],
    [AV.ECONNREFUSED, 'open', 'refused', false],
    [AV.EOF, 'read', 'ended', false],
    [AV.HTTP_SERVER_ERROR, 'open', 'server_error', false],
    [AV.EIO, 'open', 'error', false],
    [-22, 'open', 'invalid_source', true],
    [-22, 'read', 'error', false],
  ] as const)('code %i while %s: %s (permanent %s)', (code, stage, reason, permanent) => {
    expect(classifyFailure(new SourceError('x', { code, stage }))).toEqual({ reason, permanent });
  });

  it('reads timeouts, stalls and explicit reasons', () => {
    expect(classifyFailure(new SourceTimeoutError('x', { stage: 'open' }))).toEqual({ reason: 'timeout', permanent: false });
    expect(classifyFailure(new SourceTimeoutError('x', { stage: 'read', reason: 'stalled' }))).toEqual({
      reason: 'stalled',
      permanent: false,
    });
    expect(classifyFailure(new TimeoutError('x'))).toEqual({ reason: 'timeout', permanent: false });
    expect(classifyFailure(new SourceError('x', { stage: 'open', reason: 'host_not_found' }))).toEqual({
      reason: 'host_not_found',
      permanent: true,
    });
    expect(classifyFailure(new Error('x'))).toEqual({ reason: 'error', permanent: false });
  });

  it('survives the trip across the worker boundary', () => {
    const e = deserializeError(serializeError(new SourceTimeoutError('late', { code: -110, stage: 'read', cause: new Error('why') })));
    expect(e).toBeInstanceOf(SourceTimeoutError);
    expect(e).toMatchObject({ message: 'late', code: -110, stage: 'read', reason: 'timeout' });
    expect((e.cause as Error).message).toBe('why');
    const c = deserializeError(serializeError(new SourceError('no', { code: AV.HTTP_NOT_FOUND, stage: 'open' })));
    expect(classifyFailure(c)).toEqual({ reason: 'not_found', permanent: true });
  });
});
