import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';

const DIR = fileURLToPath(new URL('../../observability/prometheus/', import.meta.url));
const RULES = parseYaml(readFileSync(`${DIR}detektr-alerts.yml`, 'utf8')) as { groups: { rules: { alert: string }[] }[] };
const TESTS = parseYaml(readFileSync(`${DIR}detektr-alerts.test.yml`, 'utf8')) as {
  tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
};

describe('shipped alert rules under promtool test rules', () => {
  it('every alert has a case where it fires and one where it stays quiet', () => {
    const cases = TESTS.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const alert of RULES.groups.flatMap((g) => g.rules.map((r) => r.alert))) {
      const mine = cases.filter((c) => c.alertname === alert);
      expect(
        mine.some((c) => c.exp_alerts.length > 0),
        `${alert} has a firing case`,
      ).toBe(true);
      expect(
        mine.some((c) => c.exp_alerts.length === 0),
        `${alert} has a quiet case`,
      ).toBe(true);
    }
  });

  it('all cases pass (worker down, camera offline behind a crashed capture, no processor per buffer, ...)', () => {
    const r = spawnSync('/usr/bin/promtool', ['test', 'rules', 'detektr-alerts.test.yml'], { cwd: DIR, encoding: 'utf8' });
    expect(r.error).toBeUndefined();
    expect(`${r.stdout}${r.stderr}`).toMatch(/SUCCESS/);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});
