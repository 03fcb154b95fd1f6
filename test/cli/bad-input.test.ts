import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runDetektr } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'detektr-cli-'));
const badKey = join(dir, 'bad-key.yml');
writeFileSync(badKey, 'redis-url: redis://127.0.0.1:6379\nframes_per_second: 10\n');
const badYaml = join(dir, 'bad.yml');
writeFileSync(badYaml, 'fps: [1, 2\n');

/** Every bad input exits 2 with a message that names it, before touching anything. */
describe('CLI bad input (exit 2, the input named)', () => {
  const cases: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
    ['unknown flag', ['buffer', '--bogus'], {}, /unknown option '--bogus'/],
    ['unknown command', ['teleport'], {}, /unknown command 'teleport'/],
    [
      'bad duration',
      ['process', '--processor', 'sample', '--frame-timeout', 'soonish'],
      {},
      /--frame-timeout: "soonish" is not a duration/,
    ],
    ['bad integer flag', ['process', '--processor', 'sample', '--concurrency', '0'], {}, /--concurrency "0"/],
    ['bad URL in the environment', ['buffer'], { REDIS_URL: 'not a url' }, /REDIS_URL: "not a url" is not a valid URL/],
    [
      'bad URL flag, password redacted',
      ['store', '--database-url', 'postgres://u:hunter2@ bad/x'],
      {},
      /--database-url: "postgres:\/\/u:\*\*\*@ bad\/x" is not a valid URL/,
    ],
    ['malformed frame id', ['trace', 'find', 'frame-42'], {}, /"frame-42" is not a ULID/],
    ['unreadable config file', ['buffer', '--config', join(dir, 'missing.yml')], {}, /config file .*missing\.yml: cannot be read/],
    ['unknown config key', ['buffer', '--config', badKey], {}, /unknown key "frames_per_second"/],
    ['invalid YAML', ['buffer', '--config', badYaml], {}, /not valid YAML/],
    ['bad prefix', ['buffer', '--prefix', 'has space'], {}, /--prefix: "has space" must be/],
    ['bad log level', ['buffer', '--log-level', 'loud'], {}, /--log-level: "loud" must be one of debug, info, warn, error/],
    ['no camera', ['capture'], { DETEKTR_CAMERAS: '' }, /no camera/],
    ['bad camera spec', ['capture', '--camera', 'front'], {}, /camera "front"/i],
    ['unknown processor', ['process', '--processor', 'teleport'], {}, /--processor "teleport" is not a built-in processor/],
    ['missing processor module', ['process', '--module', './nope.js'], {}, /--module \.\/nope\.js: cannot be loaded/],
    ['bad schema name', ['migrate', '--db-schema', 'Robert"); DROP'], {}, /schema name .* is invalid/],
  ];
  for (const [what, args, env, message] of cases) {
    it(what, async () => {
      const r = await runDetektr(args, env);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain('hunter2');
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace for a user's mistake
      expect(r.code).toBe(2);
    });
  }

  it('explains every command in --help', async () => {
    for (const cmd of ['capture', 'buffer', 'process', 'store', 'migrate', 'run', 'loadtest', 'validate', 'status']) {
      const r = await runDetektr([cmd, '--help']);
      expect(r.code, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(/Usage: detektr/);
      expect(r.stdout, cmd).toMatch(/--redis-url|--database-url/);
    }
  });
});
