import '../../src/capture/node-av-polyfill.js';
import { Decoder, Demuxer, Encoder, Muxer, pipeline } from 'node-av/api';
import { FF_ENCODER_LIBX264 } from 'node-av/constants';

/** An H.264 mp4 of `frames` frames at 25 fps, made with node-av (no ffmpeg CLI here). */
export async function makeMp4(path: string, frames: number): Promise<void> {
  const input = await Demuxer.open(`testsrc2=size=320x240:rate=25,format=yuv420p,trim=end_frame=${frames}`, {
    format: 'lavfi',
  });
  try {
    const decoder = await Decoder.create(input.video()!);
    const encoder = await Encoder.create(FF_ENCODER_LIBX264, { decoder, options: { preset: 'ultrafast' } });
    const output = await Muxer.open(path);
    try {
      await pipeline(input, decoder, encoder, output).completion;
    } finally {
      await output.close();
      encoder.close();
      decoder.close();
    }
  } finally {
    await input.close();
  }
}
