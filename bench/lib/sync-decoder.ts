import '../../src/capture/node-av-polyfill.js';
import { AVMEDIA_TYPE_VIDEO } from 'node-av/constants';
import { Codec, CodecContext, type CodecParameters, Dictionary, FormatContext, Frame, Packet } from 'node-av/lib';

/**
 * The bare decode every capture of a stream pays: node-av's low-level sync calls, one
 * decoder thread (the same calls capture's reader makes). The baseline of the capture benches.
 */
/** A one-thread decoder for a stream's parameters (the same settings as capture's reader). */
export function openDecoderFor(par: CodecParameters): CodecContext {
  const codec = Codec.findDecoder(par.codecId)!;
  const dec = new CodecContext();
  dec.allocContext3(codec);
  dec.parametersToContext(par);
  dec.threadCount = 1;
  if (dec.open2Sync(codec, null) < 0) throw new Error('cannot open the decoder');
  return dec;
}

export function openSyncDecoder(url: string, options: Record<string, string>) {
  const fmt = new FormatContext();
  if (fmt.openInputSync(url, null, Dictionary.fromObject(options)) < 0 || fmt.findStreamInfoSync(null) < 0)
    throw new Error(`cannot open ${url}`);
  const index = fmt.findBestStream(AVMEDIA_TYPE_VIDEO);
  const dec = openDecoderFor(fmt.streams[index].codecpar);
  const pkt = new Packet();
  pkt.alloc();
  const frame = new Frame();
  frame.alloc();
  return { fmt, index, dec, pkt, frame };
}
