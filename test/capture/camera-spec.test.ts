import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCameraSpec, TESTSRC_GRAPH } from '../../src/capture/camera-spec.js';
import { redactUrl } from '../../src/config/redact.js';
import { InvalidInputError } from '../../src/domain/errors.js';

function parseError(spec: string): InvalidInputError {
  try {
    parseCameraSpec(spec);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
    return err as InvalidInputError;
  }
  throw new Error(`expected "${spec}" to be rejected`);
}

describe('parseCameraSpec', () => {
  it('expands testsrc to a 640x360 25 fps lavfi graph', () => {
    expect(parseCameraSpec('cam1=testsrc')).toEqual({ id: 'cam1', kind: 'lavfi', url: TESTSRC_GRAPH });
    expect(TESTSRC_GRAPH).toBe('testsrc2=size=640x360:rate=25');
  });

  it('takes any lavfi graph after lavfi:, keeping its own = signs', () => {
    expect(parseCameraSpec('black=lavfi:color=black:size=320x240:rate=25')).toEqual({
      id: 'black',
      kind: 'lavfi',
      url: 'color=black:size=320x240:rate=25',
    });
  });

  it('reads file:// urls and plain paths as files with absolute paths', () => {
    expect(parseCameraSpec('f=file:///data/videos/a%20b.mp4')).toEqual({ id: 'f', kind: 'file', url: '/data/videos/a b.mp4' });
    expect(parseCameraSpec('f=/data/x.mp4')).toEqual({ id: 'f', kind: 'file', url: '/data/x.mp4' });
    expect(parseCameraSpec('f=clips/x.mp4')).toEqual({ id: 'f', kind: 'file', url: resolve('clips/x.mp4') });
  });

  it('keeps rtsp urls verbatim, credentials included, for FFmpeg', () => {
    for (const url of [
      'rtsp://cam.local/stream',
      'rtsp://10.0.0.5:554/Streaming/Channels/101',
      'rtsp://admin:s3cret@10.0.0.5:8554/live?channel=1',
      'rtsp://admin:p@ss@10.0.0.5/live',
      'rtsp://[::1]:8554/cam',
      'rtsps://cam.example.com/secure',
    ]) {
      expect(parseCameraSpec(`cam_A-1=${url}`)).toEqual({ id: 'cam_A-1', kind: 'rtsp', url });
    }
  });

  it('accepts ids of 1 to 64 letters, digits, _ and -', () => {
    expect(parseCameraSpec('a=testsrc').id).toBe('a');
    expect(parseCameraSpec(`${'x'.repeat(64)}=testsrc`).id).toHaveLength(64);
  });

  it.each([
    ['', /expected id=url/],
    ['testsrc', /expected id=url/],
    ['=testsrc', /Invalid camera id ""/],
    ['my cam=testsrc', /Invalid camera id "my cam"/],
    ['cam.1=testsrc', /Invalid camera id "cam\.1"/],
    [`${'x'.repeat(65)}=testsrc`, /Invalid camera id/],
    ['cam=', /empty url/],
    ['cam=   ', /empty url/],
    ['cam=lavfi:', /needs a filter graph/],
    ['cam=http://host/video.mjpg', /unsupported scheme "http" in "http:\/\/host\/video\.mjpg"/],
    ['cam=file:relative.mp4', /invalid file url "file:relative\.mp4"/],
    ['cam=file://otherhost/x.mp4', /invalid file url "file:\/\/otherhost\/x\.mp4"/],
    ['cam=rtsp:///nohost', /invalid rtsp url "rtsp:\/\/\/nohost": missing host/],
    ['cam=rtsp://host:99999/x', /invalid rtsp url "rtsp:\/\/host:99999\/x"/],
    ['cam=rtsp://host:0/x', /port must be 1-65535/],
    ['cam=rtsp://ho st/x', /invalid rtsp url "rtsp:\/\/ho st\/x"/],
    ['cam=/tmp/a\nb.mp4', /control characters/],
  ])('rejects %j naming the bad input', (spec, message) => {
    expect(parseError(spec).message).toMatch(message);
  });

  it.each([
    'cam=rtsp://user:secret@host:99999/x',
    'cam=rtsp://user:secret@/x',
    'cam=rtsp://user:secret@ho st/x',
    'bad id=rtsp://user:secret@host/x',
    'cam=http://user:secret@host/x',
    'rtsp://user:secret@host/x',
    'cam=rtsp://user:secret@host:0/x?password=secret',
  ])('never shows the password of %j', (spec) => {
    const { message } = parseError(spec);
    expect(message).not.toContain('secret');
    expect(JSON.stringify(parseError(spec))).not.toContain('secret');
  });

  it('masks the password as user:***@host', () => {
    expect(parseError('cam=rtsp://user:secret@host:0/x').message).toContain('"rtsp://user:***@host:0/x"');
  });
});

describe('redactUrl', () => {
  it.each([
    ['rtsp://user:secret@host/path', 'rtsp://user:***@host/path'],
    ['rtsp://user:secret@host:554/path?x=1', 'rtsp://user:***@host:554/path?x=1'],
    ['rtsp://admin:p@ss@10.0.0.5/live', 'rtsp://admin:***@10.0.0.5/live'],
    ['rtsp://admin:pa/ss@10.0.0.5/live', 'rtsp://admin:***@10.0.0.5/live'],
    ['redis://:secret@localhost:6379/0', 'redis://:***@localhost:6379/0'],
    ['rediss://default:secret@cache:6380', 'rediss://default:***@cache:6380'],
    ['postgres://detektr:secret@db:5432/detektr?sslmode=require', 'postgres://detektr:***@db:5432/detektr?sslmode=require'],
    ['postgresql://u:secret@db/x', 'postgresql://u:***@db/x'],
    ['http://host/cam?user=admin&password=secret&ch=1', 'http://host/cam?user=admin&password=***&ch=1'],
    ['rtsp://host/cam?token=secret', 'rtsp://host/cam?token=***'],
  ])('%s -> %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });

  it.each([
    'rtsp://host/stream',
    'rtsp://10.0.0.5:554/Streaming/Channels/101',
    'redis://localhost:6379',
    'redis://default@localhost:6379',
    'postgres://user:@db/x',
    '/var/videos/a.mp4',
    'testsrc2=size=640x360:rate=25',
    '',
  ])('leaves %j without a password unchanged', (url) => {
    expect(redactUrl(url)).toBe(url);
  });
});
