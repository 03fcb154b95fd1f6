import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, redactedConfig } from '../../src/config/load-config.js';
import { InvalidInputError } from '../../src/domain/errors.js';

function configFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'detektr-config-'));
  const path = join(dir, 'detektr.yml');
  writeFileSync(path, text);
  return path;
}

describe('config', () => {
  it('uses defaults when nothing is given', () => {
    const { config, sources } = loadConfig({ env: {}, cwd: '/nonexistent' });
    expect(config.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(config.prefix).toBe('detektr:');
    expect(sources.redisUrl).toBe('default');
  });

  it('applies flags > environment > file > defaults', () => {
    const path = configFile('prefix: "file:"\nfps: 3\nbatch-size: 7\nlogLevel: warn\n');
    const env = { DETEKTR_PREFIX: 'env:', DETEKTR_FPS: '4' };
    const { config, sources } = loadConfig({ env, configPath: path, flags: { prefix: 'flag:' } });
    expect(config.prefix).toBe('flag:');
    expect(sources.prefix).toBe('flag');
    expect(config.fps).toBe(4);
    expect(sources.fps).toBe('env');
    expect(config.batchSize).toBe(7);
    expect(sources.batchSize).toBe('file');
    expect(config.logLevel).toBe('warn');
    expect(config.streamMaxLen).toBe(100_000);
    expect(sources.streamMaxLen).toBe('default');
  });

  it('parses durations with units', () => {
    const { config } = loadConfig({ env: { DETEKTR_CLAIM_IDLE: '1.5s', DETEKTR_PAYLOAD_TTL: '10m' }, cwd: '/nonexistent' });
    expect(config.claimIdle).toBe(1500);
    expect(config.payloadTtl).toBe(600_000);
  });

  it('names the bad key and value', () => {
    expect(() => loadConfig({ env: { DETEKTR_FPS: 'fast' }, cwd: '/x' })).toThrow('DETEKTR_FPS: "fast" is not a number');
    expect(() => loadConfig({ env: {}, cwd: '/x', flags: { batchSize: '0' } })).toThrow('--batch-size: "0" is out of range');
    expect(() => loadConfig({ env: { DETEKTR_CLAIM_IDLE: 'soon' }, cwd: '/x' })).toThrow(/DETEKTR_CLAIM_IDLE: "soon" is not a duration/);
    expect(() => loadConfig({ env: { DETEKTR_PREFIX: 'bad prefix' }, cwd: '/x' })).toThrow(InvalidInputError);
    const path = configFile('redis_url: redis://x\n');
    expect(() => loadConfig({ env: {}, configPath: path })).toThrow(`config file ${path}: unknown key "redis_url"`);
  });

  it('reports an unreadable or invalid config file by path', () => {
    expect(() => loadConfig({ env: {}, configPath: '/nonexistent/detektr.yml' })).toThrow(
      /config file \/nonexistent\/detektr.yml: cannot be read/,
    );
    const path = configFile('fps: [1, 2\n');
    expect(() => loadConfig({ env: {}, configPath: path })).toThrow(/not valid YAML/);
  });

  it('never shows a password, neither in errors nor in the printed config', () => {
    try {
      loadConfig({ env: { DATABASE_URL: 'postgres://app:hunter2@db host/x' }, cwd: '/x' });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
      expect((err as Error).message).toContain('DATABASE_URL');
    }
    const { config } = loadConfig({
      env: { DATABASE_URL: 'postgres://app:hunter2@db/x' },
      cwd: '/x',
      flags: { cameras: ['front=rtsp://admin:hunter2@cam/s'] },
    });
    const printed = JSON.stringify(redactedConfig(config));
    expect(printed).not.toContain('hunter2');
    expect(printed).toContain('postgres://app:***@db/x');
  });

  it('accepts cameras from the file as strings or objects', () => {
    const path = configFile('cameras:\n  - front=testsrc\n  - id: yard\n    url: rtsp://cam/yard\n');
    expect(loadConfig({ env: {}, configPath: path }).config.cameras).toEqual(['front=testsrc', 'yard=rtsp://cam/yard']);
  });
});
