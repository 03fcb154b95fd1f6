// `detektr capture --jpeg-width / --detect-url / --hwaccel` as a user runs them (dist/:
// `npm run build` first), publishing to the real Redis.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFrame } from '../../src/bus/frame-codec.js';
import { HWACCEL_TYPES, probeHwaccel } from '../../src/capture/hwaccel.js';
import { runDetektr } from '../helpers/cli.js';
import { REDIS_URL, testRedis, type TestRedis } from '../helpers/redis.js';
import { freePort } from '../helpers/rtsp-server.js';

const SRC = 'lavfi:testsrc2=size=640x360:rate=25';
const SUB = 'lavfi:testsrc2=size=320x180:rate=25';

describe('detektr capture: JPEG width, sub-stream, hwaccel', () => {
  let t: TestRedis;
  let dir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    t = await testRedis('capture-options');
    dir = mkdtempSync(join(tmpdir(), 'detektr-capture-options-'));
    env = { REDIS_URL, DETEKTR_PREFIX: t.prefix, DETEKTR_METRICS_PORT: '0' };
  });

  afterAll(async () => {
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Sizes of the frames each camera published, in order. */
  async function sizes(): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const [, fields] of await t.redis.xrange(t.keys.captured, '-', '+')) {
      const f = decodeFrame(fields);
      (out[f.cameraId] ??= []).push(`${f.width}x${f.height}`);
    }
    await t.redis.del(t.keys.captured);
    return out;
  }

  it('--jpeg-width downscales every camera keeping the aspect ratio; --hwaccel none decodes in software', async () => {
    const r = await runDetektr(
      ['capture', '--camera', `a=${SRC}`, '--jpeg-width', '160', '--hwaccel', 'none', '--max-frames', '2'],
      env,
      60_000,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(await sizes()).toEqual({ a: ['160x90', '160x90'] });
  });

  it('--detect-url: frames come from the sub-stream, and the camera url is not opened', async () => {
    // Nothing listens on the camera's own url: opening it would fail the camera.
    const dead = `rtsp://admin:pw-never-shown@127.0.0.1:${await freePort()}/main`;
    const r = await runDetektr(
      ['capture', '--camera', `a=${dead}`, '--camera', `b=${SRC}`, '--detect-url', `a=${SUB}`, '--max-frames', '2', '--log-level', 'debug'],
      env,
      60_000,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(await sizes()).toEqual({ a: ['320x180', '320x180'], b: ['640x360', '640x360'] });
    expect(r.stderr).not.toContain('pw-never-shown');
  });

  it('config file: a camera entry with detect-url and jpeg-width', async () => {
    const file = join(dir, 'detektr.yml');
    writeFileSync(
      file,
      ['cameras:', '  - id: front', `    url: ${SRC}`, `    detect-url: ${SUB}`, '    jpeg-width: 160', `  - side=${SRC}`, ''].join('\n'),
    );
    const r = await runDetektr(['capture', '--config', file, '--max-frames', '1'], env, 60_000);
    expect(r.code, r.stderr).toBe(0);
    expect(await sizes()).toEqual({ front: ['160x90'], side: ['640x360'] });
  });

  it('--hwaccel auto: a device when one opens, else software decoding, said in a warning', async () => {
    const r = await runDetektr(['capture', '--camera', `a=${SRC}`, '--hwaccel', 'auto', '--max-frames', '1'], env, 60_000);
    expect(r.code, r.stderr).toBe(0);
    expect(await sizes()).toEqual({ a: ['640x360'] });
    if (HWACCEL_TYPES.some((type) => probeHwaccel(type).available)) expect(r.stderr).toMatch(/"msg":"hwaccel".*"setting":"auto"/);
    else expect(r.stderr).toMatch(/"level":"warn".*"msg":"hwaccel".*auto: no hardware decoder available .*decoding in software/);
  });

  it.each([
    [['--jpeg-width', '8'], /--jpeg-width "8" must be 0 \(full resolution\) or 16\.\.16384/],
    [['--detect-url', `b=${SUB}`], /--detect-url: no camera "b" \(cameras: a\)/],
    [
      ['--detect-url', 'a=http://admin:pw-never-shown@host/x'],
      /--detect-url a: unsupported scheme "http" in "http:\/\/admin:\*\*\*@host\/x"/,
    ],
    [['--hwaccel', 'gpu'], /--hwaccel: "gpu" must be one of none, vaapi, cuda, qsv, auto/],
  ])('exits 2 naming the bad flag: %j', async (args, message) => {
    const r = await runDetektr(['capture', '--camera', `a=${SRC}`, ...args], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain('pw-never-shown');
  });

  it('exits 2 before opening any camera when the asked-for device is not on this machine', async () => {
    const missing = HWACCEL_TYPES.find((type) => !probeHwaccel(type).available);
    expect(missing).toBeDefined();
    const r = await runDetektr(['capture', '--camera', `a=${SRC}`, '--hwaccel', missing!], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`--hwaccel: "${missing}" is not available on this machine: cannot open a ${missing} device`));
    expect(await sizes()).toEqual({});
  });
});
