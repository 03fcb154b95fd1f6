// A child process for bench/capture.bench.ts: reads one stream until killed, so the parent
// can measure its CPU from /proc/<pid>/stat. Modes:
//   decode     bare node-av decode, low-level sync calls, one decoder thread: the minimum
//              any capture of this stream pays (the same calls capture's reader makes)
//   decode-hl  bare node-av decode, the idiomatic high-level API (Demuxer + Decoder, async)
//   reader     capture's reader (src/capture/reader.ts) alone: decode + sample + checks +
//              JPEG at --fps, no thread hand-off, no Redis, no tracing; options
//              --jpeg-path planes|swscale (how frames reach the encoder), --jpeg-width <px>,
//              --jpeg-huffman optimal|default (mjpeg's Huffman tables)
//
// usage: node --import tsx bench/lib/decode-child.ts <mode> <rtsp-url> [fps] [options]
import '../../src/capture/node-av-polyfill.js';
import { parseArgs } from 'node:util';
import { Decoder, Demuxer } from 'node-av/api';
import { DEFAULT_VALIDATION } from '../../src/capture/frame-check.js';
import type { JpegHuffman, JpegPath } from '../../src/capture/jpeg-encoder.js';
import { runReader } from '../../src/capture/reader.js';
import { openSyncDecoder } from './sync-decoder.js';

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: { 'jpeg-path': { type: 'string', default: 'planes' }, 'jpeg-width': { type: 'string' }, 'jpeg-huffman': { type: 'string' } },
});
const [mode, url, fpsArg] = positionals;
const OPTIONS = { rtsp_transport: 'tcp', probesize: '32768', analyzeduration: '500000', timeout: '2500000' };
let frames = 0;

if (mode === 'decode') {
  const { fmt, index, dec, pkt, frame } = openSyncDecoder(url, OPTIONS);
  // Sync calls block the event loop: let signals in now and then.
  for (;;) {
    for (let i = 0; i < 25; i++) {
      if (fmt.readFrameSync(pkt) < 0) process.exit(3);
      if (pkt.streamIndex === index) {
        dec.sendPacketSync(pkt);
        while (dec.receiveFrameSync(frame) >= 0) frames++;
      }
      pkt.unref();
    }
    await new Promise((r) => setImmediate(r));
  }
} else if (mode === 'decode-hl') {
  const input = await Demuxer.open(url, { options: OPTIONS });
  const decoder = await Decoder.create(input.video()!);
  for await (const frame of decoder.frames(input.packets())) {
    if (!frame) break;
    frames++;
    frame.free();
  }
  process.exit(3);
} else if (mode === 'reader') {
  const fps = Number(fpsArg ?? 10);
  runReader(
    {
      url,
      kind: 'rtsp',
      label: url,
      fps,
      quality: 80,
      maxWidth: flags['jpeg-width'] ? Number(flags['jpeg-width']) : undefined,
      jpegPath: flags['jpeg-path'] as JpegPath,
      jpegHuffman: flags['jpeg-huffman'] as JpegHuffman | undefined,
      thumbnailWidth: 0,
      readTimeoutMs: 5000,
      rtspTimeoutMs: 2500,
      demuxOptions: { ...OPTIONS, allowed_media_types: 'video' },
      decoderThreads: 1,
      loop: false,
      validation: DEFAULT_VALIDATION,
    },
    {
      stopped: () => false,
      wait: () => undefined,
      progress: new Float64Array(4),
      onOpen: () => undefined,
      onFrame: () => void frames++,
      onStats: () => undefined,
    },
  );
  process.exit(3);
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
