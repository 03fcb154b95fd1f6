import { Command } from 'commander';
import { applyNoColor } from '../src/terminal/colors.js';
import { commanderOutput, EXIT, jsonRequested, reportCliError } from './common.js';
import { packageVersion } from '../src/config/package-info.js';

export { EXIT } from './common.js';

/**
 * Each command's module, loaded only when needed: a one-shot command such as `trace find`
 * then starts without importing capture (node-av), ink, the OpenTelemetry SDK of the
 * others... `--help` and unknown commands load them all.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./run.js')).runCommand(),
  migrate: async () => (await import('./migrate.js')).migrateCommand(),
  capture: async () => (await import('./capture.js')).captureCommand(),
  buffer: async () => (await import('./buffer.js')).bufferCommand(),
  process: async () => (await import('./process.js')).processCommand(),
  store: async () => (await import('./store.js')).storeCommand(),
  maintain: async () => (await import('./maintain.js')).maintainCommand(),
  trace: async () => (await import('./trace.js')).traceCommand(),
  validate: async () => (await import('./validate.js')).validateCommand(),
  loadtest: async () => (await import('./loadtest.js')).loadtestCommand(),
  status: async () => (await import('./status.js')).statusCommand(),
  config: async () => (await import('./config.js')).configCommand(),
  completion: async () => (await import('./completion.js')).completionCommand(),
};

/** The program with every command, or only `only` when it names one. */
export async function buildProgram(only?: string, json = false): Promise<Command> {
  const program = new Command('detektr')
    .description('camera video pipelines with per-frame observability: every frame traced, counted and findable by its id')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
First try (one process, synthetic camera):
  detektr run --max-frames 50

Pipeline (each a long-lived worker; run them side by side):
  detektr migrate                              schema into $DATABASE_URL
  detektr capture --camera demo=testsrc        cameras -> frames:captured
  detektr buffer                               frames:captured -> frames:ready:<processor>
  detektr process --processor sample           processes frames, emits lifecycle events
  detektr store                                lifecycle events -> PostgreSQL
  detektr trace find <frameId>                 where did that frame go?

Environment: REDIS_URL, DATABASE_URL, DETEKTR_* (see docs/architecture.md), OTEL_* (OpenTelemetry).
Exit codes: 0 ok, 1 failure or not found, 2 bad usage or input.`,
    );
  const names = only !== undefined && Object.hasOwn(COMMANDS, only) ? [only] : Object.keys(COMMANDS);
  for (const cmd of await Promise.all(names.map((n) => COMMANDS[n]()))) program.addCommand(cmd);
  const exitOverride = (cmd: Command) => {
    cmd.exitOverride().configureOutput(commanderOutput(json));
    cmd.commands.forEach(exitOverride);
  };
  exitOverride(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  let code: number;
  const json = jsonRequested(argv.slice(2));
  applyNoColor();
  try {
    await (await buildProgram(argv[2], json)).parseAsync(argv);
    code = typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    code = reportCliError(err, json);
  }
  // Workers have closed their connections; exit explicitly so a stray handle cannot hang a one-shot command.
  process.exit(code);
}
