import '../../src/capture/node-av-polyfill.js';
import { AVMEDIA_TYPE_VIDEO } from 'node-av/constants';
import { Codec, CodecContext, Dictionary, FormatContext, Frame, Packet } from 'node-av/lib';

/**
 * The bare decode every capture of a stream pays: node-av's low-level sync calls, one
 * decoder thread (the same calls capture's reader makes). The baseline of the capture benches.
 */
export function openSyncDecoder(url: string, options: Record<string, string>) {
  const fmt = new FormatContext();
  if (fmt.openInputSync(url, null, Dictionary.fromObject(options)) < 0 || fmt.findStreamInfoSync(null) < 0)
    throw new Error(`cannot open ${url}`);
  const index = fmt.findBestStream(AVMEDIA_TYPE_VIDEO);
  const par = fmt.streams[index].codecpar;
  const codec = Codec.findDecoder(par.codecId)!;
  const dec = new CodecContext();
  dec.allocContext3(codec);
  dec.parametersToContext(par);
  dec.threadCount = 1;
  if (dec.open2Sync(codec, null) < 0) throw new Error('cannot open the decoder');
  const pkt = new Packet();
  pkt.alloc();
  const frame = new Frame();
  frame.alloc();
  return { fmt, index, dec, pkt, frame };
}
