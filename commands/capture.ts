import { Command, Option } from 'commander';
import { CaptureService } from '../src/capture/capture-service.js';
import { parseCameraSpec } from '../src/capture/camera-spec.js';
import { InvalidInputError } from '../src/domain/errors.js';
import { hostWorker } from '../src/ops/worker-host.js';
import { collect, resolveConfig, withConfigOptions } from './common.js';

export function captureCommand(): Command {
  const cmd = new Command('capture')
    .description('capture frames from cameras (RTSP, files, FFmpeg test sources) and publish them to the captured stream')
    .option('--camera <id=url>', 'a camera: id=rtsp://user:pass@host/path, id=testsrc, id=lavfi:<graph>, id=/path/video.mp4 (repeatable)', collect)
    .option('--fps <n>', 'frames per second sampled from each camera (default 5)')
    .option('--jpeg-quality <1-100>', 'JPEG quality of frame payloads (default 80)')
    .option('--payload-ttl <duration>', 'how long each frame image stays in Redis (default 5m)')
    .addOption(new Option('--max-frames <n>', 'stop each camera after n published frames, then exit').argParser((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidInputError(`--max-frames "${v}" must be a positive integer`);
      return n;
    }));
  withConfigOptions(cmd, { worker: true });
  return cmd.action(async (flags: Record<string, unknown>) => {
    const { config } = resolveConfig(flags, { cameras: flags.camera, fps: flags.fps, jpegQuality: flags.jpegQuality, payloadTtl: flags.payloadTtl });
    if (!config.cameras.length) throw new InvalidInputError('no camera: give --camera id=url (e.g. --camera demo=testsrc) or list cameras in the config file');
    const cameras = config.cameras.map(parseCameraSpec);
    const ids = new Set<string>();
    for (const c of cameras) {
      if (ids.has(c.id)) throw new InvalidInputError(`--camera: camera id "${c.id}" is given twice`);
      ids.add(c.id);
    }
    process.exitCode = await hostWorker({
      component: 'capture',
      config,
      defaultMetricsPort: 9101,
      create: (ctx) => {
        const service = new CaptureService({
          redis: ctx.redis(), keys: ctx.keys, tracer: ctx.tracer, metrics: ctx.metrics, logger: ctx.logger,
          cameras, fps: config.fps, jpegQuality: config.jpegQuality, payloadTtlMs: config.payloadTtl,
          streamMaxLen: config.streamMaxLen, maxFrames: flags.maxFrames as number | undefined,
        });
        return {
          run: () => service.run(),
          close: () => service.close(),
          readiness: () => {
            const checks: Record<string, string> = {};
            for (const s of service.status.values()) checks[`camera:${s.id}`] = s.online ? 'online' : `offline${s.lastError ? `: ${s.lastError}` : ''}`;
            return { ready: [...service.status.values()].some((s) => s.online), checks };
          },
        };
      },
    });
  });
}
