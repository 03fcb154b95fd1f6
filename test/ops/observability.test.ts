import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { migrate } from '../../src/store/migrate.js';
import { createPool } from '../../src/store/pg.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { newFrameId } from '../../src/domain/frame-id.js';
import { dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../helpers/pg.js';

const ROOT = fileURLToPath(new URL('../../observability/', import.meta.url));
const DASHBOARDS = readdirSync(`${ROOT}grafana`)
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ file: f, doc: JSON.parse(readFileSync(`${ROOT}grafana/${f}`, 'utf8')) }));
const RULES_FILE = `${ROOT}prometheus/detektr-alerts.yml`;
const RULES = parseYaml(readFileSync(RULES_FILE, 'utf8')) as { groups: { name: string; rules: { alert: string; expr: string }[] }[] };

type Target = { expr?: string; rawSql?: string };
const targets = (doc: { panels: { targets?: Target[] }[] }) => doc.panels.flatMap((p) => p.targets ?? []);

/** Metric families as the workers expose them on /metrics (one registry definition for all). */
async function exportedNames(): Promise<Set<string>> {
  const text = await createMetrics('test').registry.metrics();
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)/gm)) {
    names.add(m[1]);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m[1] + s);
  }
  return names;
}

const referenced = (expr: string) => [...expr.matchAll(/\bdetektr_[a-z0-9_]+/g)].map((m) => m[0]);

describe('shipped observability files', () => {
  it('dashboards and alert rules only use metrics the workers export', async () => {
    const names = await exportedNames();
    const exprs = [
      ...DASHBOARDS.flatMap((d) => targets(d.doc).map((t) => t.expr)),
      ...RULES.groups.flatMap((g) => g.rules.map((r) => r.expr)),
    ].filter((e): e is string => Boolean(e));
    expect(exprs.length).toBeGreaterThan(20);
    const missing = [...new Set(exprs.flatMap(referenced))].filter((n) => !names.has(n));
    expect(missing).toEqual([]);
  });

  it('covers what operators alert on: camera offline, frozen, lag growing, drops, dead letters', () => {
    const alerts = RULES.groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(alerts).toEqual(
      expect.arrayContaining([
        'DetektrCameraOffline',
        'DetektrCameraFrozen',
        'DetektrLagGrowing',
        'DetektrFramesDropped',
        'DetektrDeadLetterGrowing',
      ]),
    );
    expect(DASHBOARDS.map((d) => d.doc.uid).sort()).toEqual(['detektr-camera', 'detektr-frame-search', 'detektr-overview']);
  });

  it('alert rules pass promtool', () => {
    // .ci/run installs Debian's prometheus package, which ships promtool.
    expect(existsSync('/usr/bin/promtool'), 'promtool (Debian package prometheus) is installed').toBe(true);
    const out = execFileSync('/usr/bin/promtool', ['check', 'rules', RULES_FILE]).toString();
    expect(out).toMatch(/SUCCESS: \d+ rules found/);
  });

  describe('frame search dashboard queries run against the real schema', () => {
    const schema = uniqueSchema('obs');
    let pool: pg.Pool;
    beforeAll(async () => {
      pool = createPool(TEST_DATABASE_URL, { schema });
      await migrate({ pool, schema });
    });
    afterAll(async () => {
      await pool?.end();
      await dropSchema(schema);
    });
    it('every SQL panel executes', async () => {
      const sqls = DASHBOARDS.flatMap((d) => targets(d.doc).map((t) => t.rawSql)).filter((s): s is string => Boolean(s));
      expect(sqls.length).toBeGreaterThanOrEqual(3);
      for (const sql of sqls) await pool.query(sql.replaceAll('$frame_id', newFrameId()));
    });
  });
});
