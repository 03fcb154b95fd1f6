/**
 * libjpeg-turbo's TurboJPEG 3 API (tj3*), called through koffi, a C FFI whose npm packages
 * carry prebuilt binaries: JPEG straight from the decoder's YUV planes
 * (tj3CompressFromYUVPlanes8), with libjpeg-turbo's SIMD DCT and Huffman coder.
 *
 * The library: `turbojpegLibrary` when set (a path to libturbojpeg.so.0 / .dylib / .dll of
 * libjpeg-turbo 3.0 or later), else the one @julusian/jpeg-turbo ships prebuilt for Linux
 * (x64, arm64, arm, musl) inside its npm package. Both packages are optional dependencies:
 * where either is missing (an install without optional packages, macOS or Windows with no
 * library named), `jpegEncoder: auto` takes FFmpeg's mjpeg and says why (jpeg-encoder.ts).
 *
 * Why (docs/benchmarks.md, bench/capture-encoders.ts): on the bench's 720p frames it costs
 * less CPU than mjpeg at a higher quality, since its quality is libjpeg's own scale
 * (`--jpeg-quality 80` means what it means in every libjpeg tool).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Frame } from 'node-av/lib';

// turbojpeg.h (libjpeg-turbo 3.0): enum TJINIT, TJPARAM, TJSAMP.
const TJINIT_COMPRESS = 0;
const TJPARAM_QUALITY = 3;
const TJPARAM_SUBSAMP = 4;
const TJPARAM_OPTIMIZE = 11;
const TJPARAM_NOREALLOC = 2;
const TJSAMP_420 = 2;

/** The package that ships the library, and where in it (pkg-prebuilds' layout). */
const BUNDLED_PACKAGE = '@julusian/jpeg-turbo';

interface Koffi {
  load(path: string): { func(signature: string): (...args: unknown[]) => unknown };
  view(ptr: unknown, len: number): ArrayBuffer;
}

interface TurboJpegLib {
  path: string;
  koffi: Koffi;
  init(type: number): unknown;
  destroy(handle: unknown): void;
  set(handle: unknown, param: number, value: number): number;
  errorStr(handle: unknown): string;
  alloc(bytes: number): unknown;
  free(ptr: unknown): void;
  bufSize(width: number, height: number, subsamp: number): number;
  fromYuvPlanes(
    handle: unknown,
    planes: Buffer[],
    width: number,
    strides: number[],
    height: number,
    out: unknown[],
    size: number[],
  ): number;
}

const require = createRequire(import.meta.url);
/** One load per thread and path (a reader thread encodes for several cameras). */
const loaded = new Map<string, TurboJpegLib | string>();

/** Where the bundled library is for this platform, or why there is none. */
function bundledLibrary(): { path?: string; error?: string } {
  let dir: string;
  try {
    dir = dirname(require.resolve(`${BUNDLED_PACKAGE}/package.json`));
  } catch {
    return { error: `the optional package ${BUNDLED_PACKAGE} is not installed` };
  }
  if (process.platform !== 'linux') return { error: `${BUNDLED_PACKAGE} ships no separate libturbojpeg for ${process.platform}` };
  const musl = !(process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
  const path = join(dir, 'prebuilds', `jpeg-turbo-linux-${process.arch}${musl ? '-musl' : ''}`, 'libturbojpeg.so.0');
  return existsSync(path)
    ? { path }
    : { error: `${BUNDLED_PACKAGE} has no libturbojpeg for linux-${process.arch}${musl ? ' (musl)' : ''}` };
}

/** The library (loaded once per thread), or why it cannot be used. */
export function loadTurboJpeg(library?: string): TurboJpegLib | string {
  const key = library ?? BUNDLED_PACKAGE;
  let lib = loaded.get(key);
  if (lib === undefined) {
    const where = library ? { path: library } : bundledLibrary();
    lib = where.path ? open(where.path) : where.error!;
    loaded.set(key, lib);
  }
  return lib;
}

function open(path: string): TurboJpegLib | string {
  let koffi: Koffi;
  try {
    koffi = require('koffi') as Koffi;
  } catch (err) {
    return `the optional package koffi (the FFI that calls libturbojpeg) does not load: ${(err as Error).message.split('\n')[0]}`;
  }
  try {
    const so = koffi.load(path);
    return {
      path,
      koffi,
      init: so.func('void *tj3Init(int)') as TurboJpegLib['init'],
      destroy: so.func('void tj3Destroy(void *)') as TurboJpegLib['destroy'],
      set: so.func('int tj3Set(void *, int, int)') as TurboJpegLib['set'],
      errorStr: so.func('const char *tj3GetErrorStr(void *)') as TurboJpegLib['errorStr'],
      alloc: so.func('void *tj3Alloc(size_t)') as TurboJpegLib['alloc'],
      free: so.func('void tj3Free(void *)') as TurboJpegLib['free'],
      bufSize: so.func('size_t tj3JPEGBufSize(int, int, int)') as TurboJpegLib['bufSize'],
      fromYuvPlanes: so.func(
        'int tj3CompressFromYUVPlanes8(void *, uint8_t **, int, int *, int, _Inout_ void **, _Inout_ size_t *)',
      ) as TurboJpegLib['fromYuvPlanes'],
    };
  } catch (err) {
    // A missing file, another architecture, or libjpeg-turbo 2.x (no tj3 functions).
    return `cannot use ${path}: ${(err as Error).message.split('\n')[0]} (libjpeg-turbo 3.0 or later is needed)`;
  }
}

/** One camera's compressor: a TurboJPEG handle and an output buffer it fills in place. */
export class TurboJpeg {
  private handle: unknown;
  private out: unknown[] = [null];
  private capacity = 0;
  private size = '';

  constructor(
    private readonly lib: TurboJpegLib,
    quality: number,
    optimize: boolean,
  ) {
    this.handle = lib.init(TJINIT_COMPRESS);
    if (!this.handle) throw new Error(`libturbojpeg (${lib.path}) cannot make a compressor`);
    for (const [param, value] of [
      [TJPARAM_QUALITY, quality],
      [TJPARAM_SUBSAMP, TJSAMP_420],
      [TJPARAM_OPTIMIZE, optimize ? 1 : 0],
      // Its buffer is sized once for the worst case: no allocation per frame.
      [TJPARAM_NOREALLOC, 1],
    ] as const) {
      if (lib.set(this.handle, param, value) !== 0) throw new Error(`libturbojpeg: ${lib.errorStr(this.handle)}`);
    }
  }

  /** A full-range 4:2:0 frame (yuv420p / yuvj420p planes) to a JPEG in a buffer of its own. */
  compress(frame: Frame): Buffer {
    const { width, height } = frame;
    if (`${width}x${height}` !== this.size) {
      if (this.out[0]) this.lib.free(this.out[0]);
      this.capacity = Number(this.lib.bufSize(width, height, TJSAMP_420));
      this.out = [this.lib.alloc(this.capacity)];
      if (!this.out[0]) throw new Error(`libturbojpeg cannot allocate ${this.capacity} bytes`);
      this.size = `${width}x${height}`;
    }
    const data = frame.data!;
    const { linesize } = frame;
    const size = [this.capacity];
    const ret = this.lib.fromYuvPlanes(
      this.handle,
      [data[0], data[1], data[2]],
      width,
      [linesize[0], linesize[1], linesize[2]],
      height,
      this.out,
      size,
    );
    if (ret !== 0) throw new Error(`JPEG encoding failed (libturbojpeg): ${this.lib.errorStr(this.handle)}`);
    // A copy: the library's buffer is written again by the next frame.
    return Buffer.from(new Uint8Array(this.lib.koffi.view(this.out[0], size[0])));
  }

  close(): void {
    if (this.out[0]) this.lib.free(this.out[0]);
    this.out = [null];
    this.size = '';
    if (this.handle) this.lib.destroy(this.handle);
    this.handle = null;
  }
}
