// hwaccel without a GPU: `none` decodes in software, a named device this machine lacks is
// a clear error (never a silent fallback), `auto` falls back and says so, and `validate`
// prints what it found. Whatever the machine has, each test derives what to expect from
// probing the devices itself, so none of them needs a GPU (or its absence) to be true.
import '../../src/capture/node-av-polyfill.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HWACCEL_TYPES, hwaccelReport, probeHwaccel, resolveHwaccel, type HwaccelType } from '../../src/capture/hwaccel.js';
import { openVideoSource, type OpenInfo, type VideoSourceOptions } from '../../src/capture/video-source.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import { makeMp4 } from '../helpers/make-mp4.js';

const probes = HWACCEL_TYPES.map(probeHwaccel);
/** A device type that does not open here (on a machine with all three, these tests fail loudly rather than pass idly). */
const missing = probes.find((p) => !p.available)?.type as HwaccelType;

async function first(opts: VideoSourceOptions): Promise<{ info: OpenInfo[]; width: number }> {
  const info: OpenInfo[] = [];
  for await (const img of openVideoSource({ ...opts, onOpen: (i) => info.push(i) })) return { info, width: img.width };
  throw new Error('no frame');
}

describe('hwaccel', () => {
  let dir: string;
  let mp4: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'detektr-hwaccel-'));
    mp4 = join(dir, 'h264.mp4');
    await makeMp4(mp4, 10);
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('has a device type missing on this machine to test with', () => {
    expect(missing, JSON.stringify(probes)).toBeDefined();
  });

  it('none: nothing probed, H.264 decoded in software', async () => {
    expect(resolveHwaccel('none')).toEqual({ setting: 'none', chosen: 'none', probes: [] });
    const r = await first({ url: mp4, kind: 'file', fps: 5, hwaccel: 'none' });
    expect(r.width).toBe(320);
    expect(r.info[0]).toMatchObject({ codec: 'h264', decode: 'software' });
  });

  it('a named device that does not open: an error naming the setting and why, at start-up', () => {
    let err: unknown;
    try {
      resolveHwaccel(missing, '--hwaccel');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^--hwaccel: "${missing}" is not available on this machine: cannot open a ${missing} device \\(.+; it needs .+\\) \\(use --hwaccel none or auto\\)$`,
      ),
    );
    expect(() => resolveHwaccel('gpu')).toThrow(/hwaccel: "gpu" must be one of none, vaapi, cuda, qsv, auto/);
  });

  it('auto: the first device that opens, else software with a note naming each one tried', () => {
    const r = resolveHwaccel('auto');
    const firstAvailable = probes.find((p) => p.available)?.type;
    expect(r.chosen).toBe(firstAvailable ?? 'none');
    if (firstAvailable) expect(r.note).toBeUndefined();
    else for (const t of HWACCEL_TYPES) expect(r.note).toContain(`${t}: cannot open a ${t} device`);
  });

  it('a reader told to use a device that is not there fails the camera with that reason', async () => {
    await expect(first({ url: mp4, kind: 'file', fps: 5, hwaccel: missing })).rejects.toThrow(
      new RegExp(`Video source ".*h264.mp4": cannot open a ${missing} device`),
    );
  });

  it('a codec the device cannot decode is decoded in software, and the open info says why', async () => {
    // lavfi frames (wrapped_avframe) have no hardware decoder on any device.
    const r = await first({ url: 'testsrc2=size=160x120:rate=25', kind: 'lavfi', fps: 5, hwaccel: missing });
    expect(r.info[0].decode).toBe(`software (${missing} cannot decode wrapped_avframe)`);
  });

  it('validate line: the chosen device, the setting, and each device available or why not', () => {
    const none = hwaccelReport('none');
    expect(none.status).toBe('ok');
    const available = probes.filter((p) => p.available).map((p) => p.type);
    expect(none.detail).toMatch(
      new RegExp(`^none \\(setting none; available: ${available.join(', ') || 'none'}; cuda: .+; vaapi: .+; qsv: .+\\)$`),
    );
    expect(hwaccelReport(missing)).toMatchObject({ status: 'fail', detail: expect.stringContaining(`"${missing}" is not available`) });
  });
});
