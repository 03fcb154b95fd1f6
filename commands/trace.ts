import { Command } from 'commander';
import { parseFrameId } from '../src/domain/frame-id.js';
import { NotFoundError } from '../src/domain/errors.js';
import { createPool } from '../src/store/pg.js';
import { findJourney } from '../src/trace/journey.js';
import { renderJourney, traceLink } from '../src/trace/render-journey.js';

import { resolveConfig, withConfigOptions } from './common.js';

export function traceCommand(): Command {
  const trace = new Command('trace').description("ask where frames went: a frame's journey, and (soon) slow frames and failures");
  const find = new Command('find')
    .description("a frame's journey: lifecycle events, stages with durations and processors, trace id")
    .argument('<frameId>', 'the frame id (a ULID, as printed in logs and events)')
    .option('--json', 'print the journey as JSON (shape documented in src/trace/journey.ts)')
    .option('--trace-ui-url <url>', 'trace UI base URL (Jaeger) for the trace link (env DETEKTR_TRACE_UI_URL)');
  withConfigOptions(find, { only: ['databaseUrl', 'dbSchema', 'logLevel'] });
  find.action(async (frameIdArg: string, flags: Record<string, unknown>) => {
    const frameId = parseFrameId(frameIdArg);
    const { config } = resolveConfig(flags, { traceUiUrl: flags.traceUiUrl });
    const pool = createPool(config.databaseUrl, { schema: config.dbSchema, max: 1 });
    try {
      const journey = await findJourney(pool, frameId);
      if (!journey) throw new NotFoundError(`frame ${frameId} not found in ${config.dbSchema} (is \`detektr store\` running, and is the frame older than the retention?)`);
      const url = traceLink(journey.traceId, config.traceUiUrl);
      if (flags.json) process.stdout.write(JSON.stringify({ ...journey, traceUrl: url }, null, 2) + '\n');
      else process.stdout.write(renderJourney(journey, { traceUrl: url, color: process.stdout.isTTY }) + '\n');
    } finally {
      await pool.end();
    }
  });
  return trace.addCommand(find);
}
