import { Command, Option } from 'commander';
import { CaptureService } from '../src/capture/capture-service.js';
import { parseFfmpegOptions } from '../src/capture/camera-config.js';
import { captureOptions } from '../src/capture/options.js';
import { routeFfmpegLogs } from '../src/capture/ffmpeg-log.js';
import { InvalidInputError } from '../src/domain/errors.js';
import { sendJson } from '../src/telemetry/http-server.js';
import { hostWorker } from '../src/ops/worker-host.js';
import { collect, resolveConfig, withConfigOptions } from './common.js';

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidInputError(`${flag} "${v}" must be a positive integer`);
    return n;
  };
}

export function captureCommand(): Command {
  const cmd = new Command('capture')
    .description('capture frames from cameras (RTSP, files, FFmpeg test sources) and publish them to the captured stream')
    .option(
      '--camera <id=url>',
      'a camera: id=rtsp://user:pass@host/path, id=testsrc, id=lavfi:<graph>, id=file:///path/video.mp4 (looped) (repeatable)',
      collect,
    )
    .option('--fps <n>', 'frames per second sampled from each camera (default 5)')
    .option('--jpeg-quality <1-100>', 'JPEG quality of frame payloads (default 80)')
    .option('--payload-ttl <duration>', 'how long each frame image stays in Redis (default 5m)')
    .option('--transport <tcp|udp>', 'RTSP transport (default tcp)')
    .option('--timeout <duration>', 'open and read timeout of every FFmpeg call (default 5s)')
    .option('--stall-timeout <duration>', 'reconnect a camera that decodes no frame for this long (default 10s)')
    .option('--reconnect-max <duration>', 'longest wait between reconnects; backoff is exponential with full jitter (default 30s)')
    .option('--offline-grace <duration>', '/readyz fails while a camera is offline longer than this (default 30s)')
    .option(
      '--invalid-frames <policy>',
      'corrupt, black and frozen frames: drop, flag or off, or per check e.g. corrupt=drop,black=flag,frozen=off (default corrupt=drop,black=flag,frozen=flag)',
    )
    .option('--frozen-after <duration>', 'a picture unchanged this long is frozen: camera.frozen, frames flagged (default 10s)')
    .option('--thumbnail-width <px>', 'also store a gray thumbnail this wide beside each JPEG (default 0: none)')
    .option('--jpeg-width <px>', 'downscale JPEGs wider than this, keeping the aspect ratio (default 0: full resolution)')
    .option(
      '--detect-url <id=url>',
      "take camera id's frames from this lower-resolution stream (sub-stream); its own url is then not opened (repeatable)",
      collect,
    )
    .option('--jpeg-tables <tables>', 'JPEG Huffman tables: standard (less CPU, the default) or optimal (~16 % smaller files)')
    .option('--camera-shard <id=shard>', 'pin camera id to a shard (repeatable; default: by a hash of the id)', collect)
    .option('--hwaccel <type>', 'decode on a GPU: none, vaapi, cuda, qsv or auto (default none)')
    .option(
      '--ffmpeg-option <key=value>',
      'FFmpeg demuxer/protocol option for every camera, e.g. buffer_size=1048576 (repeatable)',
      collect,
    )
    .addOption(
      new Option('--max-frames <n>', 'stop each camera after n published frames, then exit').argParser(positiveInt('--max-frames')),
    );
  withConfigOptions(cmd, { worker: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const { config, file } = resolveConfig(flags, {
      cameras: flags.camera,
      fps: flags.fps,
      jpegQuality: flags.jpegQuality,
      payloadTtl: flags.payloadTtl,
      rtspTransport: flags.transport,
      cameraTimeout: flags.timeout,
      stallTimeout: flags.stallTimeout,
      reconnectMax: flags.reconnectMax,
      offlineGrace: flags.offlineGrace,
      invalidFrames: flags.invalidFrames,
      frozenAfter: flags.frozenAfter,
      thumbnailWidth: flags.thumbnailWidth,
      jpegWidth: flags.jpegWidth,
      detectUrls: flags.detectUrl,
      hwaccel: flags.hwaccel,
      cameraShards: flags.cameraShard,
      jpegTables: flags.jpegTables,
    });
    if (!config.cameras.length)
      throw new InvalidInputError('no camera: give --camera id=url (e.g. --camera demo=testsrc) or list cameras in the config file');
    const where = file ? `config file ${file}: ` : '';
    const ffmpegOptions = flags.ffmpegOption ? parseFfmpegOptions('--ffmpeg-option', flags.ffmpegOption) : undefined;
    const options = captureOptions(config, {
      camerasFrom: flags.camera ? '--camera' : `${where}cameras`,
      maxFrames: flags.maxFrames as number | undefined,
      ffmpegOptions,
      detectUrlsFrom: flags.detectUrl ? '--detect-url' : undefined,
      hwaccelFrom: flags.hwaccel ? '--hwaccel' : undefined,
    });

    let service: CaptureService | undefined;
    process.exitCode = await hostWorker({
      component: 'capture',
      config,
      defaultMetricsPort: 9101,
      create: (ctx) => {
        routeFfmpegLogs(ctx.logger.child({ source: 'ffmpeg' }));
        service = new CaptureService(
          options({ redis: ctx.redis(), shards: ctx.shards, tracer: ctx.tracer, metrics: ctx.metrics, logger: ctx.logger }),
        );
        const s = service;
        return {
          run: () => s.run(),
          close: () => s.close(),
          readiness: () => s.readiness(),
          routes: [
            (req, res) => {
              if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/cameras') return false;
              sendJson(res, 200, { cameras: [...s.status.values()] });
              return true;
            },
          ],
        };
      },
    });
    // Every camera failed for good (wrong url, credentials, not a video): say so plainly.
    if (service?.failure) throw service.failure;
  });
}
