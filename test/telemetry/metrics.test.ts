import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { DEAD_LETTER_REASONS, DROP_REASONS, RECONNECT_REASONS } from '../../src/telemetry/metric-seeds.js';
import { negotiateFormat } from '../../src/telemetry/exposition.js';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const sources = (dir: string): string[] =>
  readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? sources(join(dir, f)) : f.endsWith('.ts') ? [join(dir, f)] : []));
const SOURCE_TEXT = sources(SRC)
  .map((f) => readFileSync(f, 'utf8'))
  .join('\n');

const SAMPLED = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 };
const UNSAMPLED = { traceId: '1bf7651916cd43dd8448eb211c80319d', spanId: 'c7ad6b7169203332', traceFlags: 0 };

/** The sample lines of a family in exposition text, e.g. `name{labels} value`. */
const samples = (text: string, name: string) => text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

describe('metrics registry', () => {
  it('exports the default Node metrics under their standard names, without a detektr_ prefix', async () => {
    const text = await createMetrics('store').registry.metrics();
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
    ])
      expect(text).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
    expect(text).not.toMatch(/detektr_process_/);
    // Gauges ending in _total are what `promtool check metrics` rejects.
    expect(text).not.toMatch(/^# TYPE \S+_total (gauge|histogram)/m);
  });

  it('has every drop reason of a worker at 0 before the first drop', async () => {
    for (const [component, reasons] of Object.entries(DROP_REASONS)) {
      const lines = samples(await createMetrics(component).registry.metrics(), 'detektr_frames_dropped_total');
      expect(lines.sort()).toEqual(reasons.map((r) => `detektr_frames_dropped_total{reason="${r}",component="${component}"} 0`).sort());
    }
    const all = samples(await createMetrics('run').registry.metrics(), 'detektr_frames_dropped_total');
    expect(all).toHaveLength(Object.values(DROP_REASONS).flat().length);
  });

  it('has the per-camera, per-processor and per-stream counters at 0 once the worker knows the name', async () => {
    const m = createMetrics('run');
    m.seedCamera('front');
    m.seedProcessor('motion');
    m.seedRoutedProcessor('motion');
    m.seedStream('p:frames:ready:motion');
    m.seedCamera('front'); // a second call changes nothing
    const text = await m.registry.metrics();
    expect(samples(text, 'detektr_capture_reconnects_total')).toHaveLength(RECONNECT_REASONS.length);
    expect(text).toContain('detektr_capture_reconnects_total{camera="front",reason="refused",component="run"} 0');
    expect(text).toContain('detektr_capture_dropped_total{camera="front",reason="corrupt",component="run"} 0');
    expect(text).toContain('detektr_capture_flagged_total{camera="front",flag="frozen",component="run"} 0');
    expect(text).toContain('detektr_frames_processed_total{processor="motion",outcome="failed",component="run"} 0');
    expect(text).toContain('detektr_breaker_transitions_total{processor="motion",to="open",component="run"} 0');
    expect(samples(text, 'detektr_stream_dead_lettered_total')).toEqual(
      DEAD_LETTER_REASONS.map((r) => `detektr_stream_dead_lettered_total{stream="p:frames:ready:motion",reason="${r}",component="run"} 0`),
    );
  });

  it('seeds every reason the call sites count (a new reason cannot be missing from the lists)', () => {
    const literal = (re: RegExp) => [...SOURCE_TEXT.matchAll(re)].map((m) => m[1]);
    const drops = [
      ...literal(/framesDropped\.inc\(\{ reason: '([a-z_]+)'/g),
      ...literal(/countDrop\([^,]+, '([a-z_]+)'/g),
      ...literal(/const label = [^;]*'([a-z_]+)' : '[a-z_]+'/g),
      ...literal(/const label = [^;]*'[a-z_]+' : '([a-z_]+)'/g),
    ];
    expect(drops.length).toBeGreaterThanOrEqual(6);
    const allDrops = Object.values(DROP_REASONS).flat() as string[];
    expect(drops.filter((r) => !allDrops.includes(r))).toEqual([]);
    const deadLetters = literal(/entriesDeadLettered\.inc\(\{ stream[^}]*reason: '([a-z_]+)'/g);
    expect(deadLetters.length).toBeGreaterThanOrEqual(3);
    expect(deadLetters.filter((r) => !(DEAD_LETTER_REASONS as readonly string[]).includes(r))).toEqual([]);
  });

  it('answers OpenMetrics with trace-id exemplars on the latency histograms, only for sampled traces', async () => {
    const m = createMetrics('process');
    m.processingSeconds.observe({ processor: 'p' }, 0.02, SAMPLED);
    m.processingSeconds.observe({ processor: 'p' }, 3, UNSAMPLED);
    m.endToEndSeconds.observe({ processor: 'p' }, 0.2, SAMPLED);
    m.framesProcessed.inc({ processor: 'p', outcome: 'completed' });
    const open = await m.registry.render('openmetrics');
    expect(open.endsWith('# EOF\n')).toBe(true);
    expect(open).toMatch(
      /^detektr_processing_seconds_bucket\{le="0\.025",component="process",processor="p"\} 1 # \{trace_id="0af7651916cd43dd8448eb211c80319c"\} 0\.02 \d+(\.\d+)?$/m,
    );
    expect(open).toMatch(
      /^detektr_end_to_end_seconds_bucket\{le="0\.25",[^}]*\} 1 # \{trace_id="0af7651916cd43dd8448eb211c80319c"\} 0\.2 /m,
    );
    expect(open).not.toContain(UNSAMPLED.traceId);
    // OpenMetrics names the counter family without _total and each sample with it.
    expect(open).toMatch(/^# TYPE detektr_frames_processed counter$/m);
    expect(open).toContain('detektr_frames_processed_total{processor="p",outcome="completed",component="process"} 1');

    const classic = await m.registry.render('prometheus');
    expect(classic).not.toContain('trace_id');
    expect(classic).not.toContain('# EOF');
    // Rendering OpenMetrics first must not rename the counters of the classic format.
    expect(classic).toMatch(/^# TYPE detektr_frames_processed_total counter$/m);
    expect(await m.registry.metrics()).toMatch(/^# TYPE detektr_frames_processed_total counter$/m);
  });

  it('picks the format from the Accept header', () => {
    expect(negotiateFormat('application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1')).toBe('openmetrics');
    expect(negotiateFormat('text/plain;version=0.0.4;q=1,*/*;q=0.1')).toBe('prometheus');
    expect(negotiateFormat(undefined)).toBe('prometheus');
  });
});
