import { isSpanContextValid, TraceFlags, type SpanContext } from '@opentelemetry/api';
import { Histogram, type HistogramConfiguration, type LabelValues } from 'prom-client';

/**
 * A latency histogram whose buckets keep the trace id of a recent observation as an
 * OpenMetrics exemplar, so a slow bucket in Grafana links to one frame's trace. Only
 * sampled spans are used: an unsampled trace id points at nothing in the trace backend.
 */
export class TracedHistogram<T extends string> {
  readonly histogram: Histogram<T>;

  constructor(config: HistogramConfiguration<T>) {
    this.histogram = new Histogram({ ...config, enableExemplars: true });
  }

  observe(labels: LabelValues<T>, value: number, span?: SpanContext): void {
    const traced = span !== undefined && isSpanContextValid(span) && (span.traceFlags & TraceFlags.SAMPLED) !== 0;
    const exemplarLabels = (traced ? { trace_id: span.traceId } : {}) as LabelValues<T>;
    this.histogram.observe({ labels, value, exemplarLabels });
  }
}
