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
import { FFmpegError, Frame } from 'node-av/lib';

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
}

interface TurboJpegLib {
  path: string;
  init(type: number): unknown;
  destroy(handle: unknown): void;
  set(handle: unknown, param: number, value: number): number;
  errorStr(handle: unknown): string;
  bufSize(width: number, height: number, subsamp: number): number;
  fromYuvPlanes(handle: unknown, planes: Buffer[], width: number, strides: number[], height: number, out: Buffer[], size: number[]): number;
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
      init: so.func('void *tj3Init(int)') as TurboJpegLib['init'],
      destroy: so.func('void tj3Destroy(void *)') as TurboJpegLib['destroy'],
      set: so.func('int tj3Set(void *, int, int)') as TurboJpegLib['set'],
      errorStr: so.func('const char *tj3GetErrorStr(void *)') as TurboJpegLib['errorStr'],
      bufSize: so.func('size_t tj3JPEGBufSize(int, int, int)') as TurboJpegLib['bufSize'],
      fromYuvPlanes: so.func(
        'int tj3CompressFromYUVPlanes8(void *, uint8_t **, int, int *, int, _Inout_ uint8_t **, _Inout_ size_t *)',
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
  /** The worst-case JPEG for the current picture size, written in place (no allocation in the library). */
  private out = Buffer.alloc(0);
  /**
   * The frame is copied here first, and the library reads these planes. Reading `data` of
   * the decoder's (pooled) frames makes node-av report each plane to V8 as external
   * memory until a GC finalizes it: at 10 fps that ran a full GC every ~2 s and cost more
   * than this copy (docs/benchmarks.md).
   */
  private readonly staging = new Frame();
  private planes: Buffer[] = [];
  private strides: number[] = [];
  private key = '';

  constructor(
    private readonly lib: TurboJpegLib,
    quality: number,
    optimize: boolean,
  ) {
    this.staging.alloc();
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
    const key = `${width}x${height}:${frame.format}`;
    if (key !== this.key) {
      this.out = Buffer.alloc(Number(this.lib.bufSize(width, height, TJSAMP_420)));
      const st = this.staging;
      st.unref();
      st.width = width;
      st.height = height;
      st.format = frame.format;
      FFmpegError.throwIfError(st.allocBuffer(), 'JPEG staging frame');
      this.planes = st.data!.slice(0, 3);
      this.strides = st.linesize.slice(0, 3);
      this.key = key;
    }
    FFmpegError.throwIfError(this.staging.copy(frame), 'JPEG staging copy');
    const size = [this.out.length];
    const ret = this.lib.fromYuvPlanes(
      this.handle,
      this.planes,
      width,
      this.strides,
      height,
      // koffi passes the buffer's address; the library writes there (NOREALLOC) and the
      // array's element comes back as that same address, not used.
      [this.out],
      size,
    );
    if (ret !== 0) throw new Error(`JPEG encoding failed (libturbojpeg): ${this.lib.errorStr(this.handle)}`);
    // A copy: the buffer is written again by the next frame.
    return Buffer.from(this.out.subarray(0, size[0]));
  }

  close(): void {
    this.out = Buffer.alloc(0);
    this.planes = [];
    this.key = '';
    this.staging.free();
    if (this.handle) this.lib.destroy(this.handle);
    this.handle = null;
  }
}
