import { Command, CommanderError } from 'commander';
import { DetektrError, InvalidInputError, NotFoundError } from '../src/domain/errors.js';
import { redactSecrets } from '../src/config/redact-text.js';
import { packageVersion } from '../src/config/package-info.js';

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

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
};

/** The program with every command, or only `only` when it names one. */
export async function buildProgram(only?: string): Promise<Command> {
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
    cmd.exitOverride();
    cmd.commands.forEach(exitOverride);
  };
  exitOverride(program);
  return program;
}

function fail(code: number, message: string): number {
  process.stderr.write(`detektr: ${redactSecrets(message)}\n`);
  return code;
}

export async function main(argv: string[]): Promise<void> {
  let code: number;
  try {
    await (await buildProgram(argv[2])).parseAsync(argv);
    code = typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has printed its message already; help and version are not errors.
      code = err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.ok : EXIT.usage;
    } else if (err instanceof InvalidInputError) {
      code = fail(EXIT.usage, err.message);
    } else if (err instanceof NotFoundError) {
      code = fail(EXIT.failure, err.message);
    } else if (err instanceof DetektrError) {
      code = fail(EXIT.failure, err.message + (err.cause instanceof Error ? ` (${err.cause.message})` : ''));
    } else {
      code = fail(
        EXIT.failure,
        err instanceof Error ? `${err.message}${err.cause instanceof Error ? ` (${err.cause.message})` : ''}` : String(err),
      );
    }
  }
  // Workers have closed their connections; exit explicitly so a stray handle cannot hang a one-shot command.
  process.exit(code);
}
