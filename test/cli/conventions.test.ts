import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, runDetektr } from '../helpers/cli.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';
import { REDIS_URL, testRedis, type TestRedis } from '../helpers/redis.js';

const exec = promisify(execFile);
const SGR = /\x1b\[[0-9;]*m/; // eslint-disable-line no-control-regex

const hasShell = (name: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** The CLI conventions of issue #12: colour, JSON errors, one error prefix, shell completion. */
describe('CLI conventions (issue #12)', () => {
  const schema = uniqueSchema('cli');
  let t: TestRedis;
  let env: NodeJS.ProcessEnv;
  let frameId: string;
  let dir: string;

  beforeAll(async () => {
    t = await testRedis('cli');
    dir = mkdtempSync(join(tmpdir(), 'detektr-cli-'));
    env = {
      REDIS_URL,
      DATABASE_URL: TEST_DATABASE_URL,
      DETEKTR_PREFIX: t.prefix,
      DETEKTR_DB_SCHEMA: schema,
      DETEKTR_METRICS_PORT: '0',
      DETEKTR_CONFIG: undefined,
      NO_COLOR: undefined,
      FORCE_COLOR: undefined,
    };
    const run = await runDetektr(['run', '--max-frames', '2', '--fps', '10', '--processor', 'sample'], env, 90_000);
    expect(run.code, run.stderr).toBe(0);
    frameId = /last frame ([0-9A-Z]{26}) is completed/.exec(run.stdout)![1];
  }, 120_000);

  afterAll(async () => {
    await t?.cleanup();
    await dropSchema(schema);
    rmSync(dir, { recursive: true, force: true });
  });

  describe('colour', () => {
    /** `detektr <args>` on a pseudo-terminal (util-linux script), as in an interactive shell. */
    async function onTerminal(args: string[], extra: NodeJS.ProcessEnv = {}): Promise<string> {
      const cmd = [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' ');
      const { stdout } = await exec('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, ...env, TERM: 'xterm', ...extra } });
      return stdout;
    }

    it('colours `trace find` on a terminal', async () => {
      const out = await onTerminal(['trace', 'find', frameId]);
      expect(out).toContain(frameId);
      expect(out).toMatch(SGR);
    }, 60_000);

    it('NO_COLOR turns it off on a terminal, for `trace find` and the lists', async () => {
      for (const args of [
        ['trace', 'find', frameId],
        ['trace', 'search', '--since', '1h'],
      ]) {
        const out = await onTerminal(args, { NO_COLOR: '1' });
        expect(out).toContain(frameId);
        expect(out, args.join(' ')).not.toMatch(SGR);
      }
    }, 60_000);

    it('a pipe gets no colour', async () => {
      const r = await runDetektr(['trace', 'find', frameId], env);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('completed');
      expect(r.stdout).not.toMatch(SGR);
    });
  });

  describe('errors', () => {
    const parse = (stdout: string) => JSON.parse(stdout) as { error: { message: string; kind: string; code: string; exitCode: number } };

    it("commander's own errors carry the detektr: prefix (unknown option, missing argument), exit 2", async () => {
      const unknown = await runDetektr(['trace', 'find', frameId, '--bogus'], env);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(/^detektr: unknown option '--bogus'\n/);
      const missing = await runDetektr(['trace', 'find'], env);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/^detektr: missing required argument 'frameId'\n/);
      expect(missing.stderr).not.toMatch(/^error:/m);
    });

    it('with --json, errors are JSON on stdout with the same exit codes: usage 2, not found 1, failure 1', async () => {
      const bad = await runDetektr(['trace', 'find', 'frame-42', '--json'], env);
      expect(bad.code).toBe(2);
      expect(parse(bad.stdout).error).toMatchObject({ kind: 'usage', code: 'InvalidInputError', exitCode: 2 });
      expect(parse(bad.stdout).error.message).toContain('"frame-42" is not a ULID');
      expect(bad.stderr).toContain('detektr: ');

      const unknownOption = await runDetektr(['trace', 'find', frameId, '--json', '--bogus'], env);
      expect(unknownOption.code).toBe(2);
      expect(parse(unknownOption.stdout).error).toEqual({
        message: "unknown option '--bogus'",
        kind: 'usage',
        code: 'commander.unknownOption',
        exitCode: 2,
      });

      const missing = await runDetektr(['trace', 'find', '01JD8X3Q5R7ZC1V2W3X4Y5Z6A7', '--json'], env);
      expect(missing.code).toBe(1);
      expect(parse(missing.stdout).error).toMatchObject({ kind: 'not_found', code: 'NotFoundError', exitCode: 1 });
      expect(parse(missing.stdout).error.message).toContain('frame 01JD8X3Q5R7ZC1V2W3X4Y5Z6A7 not found');
    });

    it('a failure with --json is JSON too, and never shows a password', async () => {
      const s = createServer();
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      const port = (s.address() as { port: number }).port;
      await new Promise<void>((r) => s.close(() => r()));
      const r = await runDetektr(
        ['trace', 'find', frameId, '--json', '--database-url', `postgres://postgres:hunter2-secret@127.0.0.1:${port}/x`],
        env,
      );
      expect(r.code).toBe(1);
      const e = parse(r.stdout).error;
      expect(e).toMatchObject({ kind: 'failure', exitCode: 1 });
      expect(e.message).toContain('ECONNREFUSED');
      expect(r.stdout + r.stderr).not.toContain('hunter2-secret');
    });
  });

  describe('completion', () => {
    /** What bash offers for `detektr <words...><TAB>`, with the script sourced in a real bash. */
    let script = '';
    async function bashOffers(line: string[]): Promise<string[]> {
      if (!script) {
        script = join(dir, 'detektr.bash');
        writeFileSync(script, (await runDetektr(['completion', 'bash'], env)).stdout);
      }
      const words = ['detektr', ...line].map((w) => `'${w}'`).join(' ');
      const { stdout } = await exec('bash', [
        '--norc',
        '-c',
        `source '${script}'; COMP_WORDS=(${words}); COMP_CWORD=${line.length}; _detektr; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ]);
      return stdout.split('\n').filter(Boolean).sort();
    }

    it('bash: commands, subcommands, options and option values from the commander tree', async () => {
      const top = await bashOffers(['']);
      for (const c of ['run', 'migrate', 'capture', 'buffer', 'process', 'store', 'trace', 'validate', 'completion', '--help', '--version'])
        expect(top).toContain(c);
      expect(await bashOffers(['tr'])).toEqual(['trace']);
      expect(await bashOffers(['trace', ''])).toEqual(expect.arrayContaining(['find', 'slow', 'failures', 'search', 'camera']));
      expect(await bashOffers(['trace', 'find', '--j'])).toEqual(['--json']);
      expect(await bashOffers(['run', '--max-'])).toEqual(['--max-frames']);
      expect(await bashOffers(['migrate', '--storage', ''])).toEqual(['auto', 'native', 'timescaledb']);
      expect(await bashOffers(['completion', ''])).toEqual(expect.arrayContaining(['bash', 'fish', 'zsh']));
      // a flag's value is not a command: `--prefix trace` does not enter `trace`
      expect(await bashOffers(['run', '--redis-url', ''])).toEqual([]);
    });

    it('zsh and fish scripts name every command and parse in their shells (where installed)', async () => {
      const zsh = (await runDetektr(['completion', 'zsh'], env)).stdout;
      const fish = (await runDetektr(['completion', 'fish'], env)).stdout;
      expect(zsh).toMatch(/^#compdef detektr\n/);
      expect(zsh).toContain("'find:a frame's journey".replace("'s", "'\\''s"));
      expect(fish).toContain("complete -c detektr -n 'test (__detektr_path) = /trace' -a 'find'");
      expect(fish).toContain("complete -c detektr -n 'test (__detektr_path) = /migrate' -l storage -x -a 'auto native timescaledb'");
      for (const [shell, text] of [
        ['zsh', zsh],
        ['fish', fish],
      ]) {
        if (!hasShell(shell)) continue;
        const file = join(dir, `detektr.${shell}`);
        writeFileSync(file, text);
        await exec(shell, ['-n', file]); // rejects on a syntax error
      }
      if (hasShell('fish')) {
        // fish can say what it would offer, with the script loaded: the real completion.
        const bin = join(dir, 'bin');
        execFileSync('mkdir', ['-p', bin]);
        symlinkSync(BIN, join(bin, 'detektr'));
        const { stdout } = await exec('fish', ['-c', `source '${join(dir, 'detektr.fish')}'; complete -C 'detektr trace f'`], {
          env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
        });
        expect(stdout.split('\n').map((l) => l.split('\t')[0])).toEqual(expect.arrayContaining(['find', 'failures']));
      }
    });

    it('an unknown shell is a usage error naming the choices', async () => {
      const r = await runDetektr(['completion', 'tcsh'], env);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        /^detektr: command-argument value 'tcsh' is invalid for argument 'shell'. Allowed choices are bash, zsh, fish/,
      );
    });
  });
});
