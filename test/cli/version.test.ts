import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runDetektr } from '../helpers/cli.js';

describe('detektr --version', () => {
  it('prints the version in package.json', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const r = await runDetektr(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });
});
