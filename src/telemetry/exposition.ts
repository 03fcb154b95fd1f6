import { Registry, type OpenMetricsContentType, type RegistryContentType } from 'prom-client';

export type ExpositionFormat = 'prometheus' | 'openmetrics';

export const CONTENT_TYPES: Record<ExpositionFormat, RegistryContentType> = {
  prometheus: Registry.PROMETHEUS_CONTENT_TYPE,
  openmetrics: Registry.OPENMETRICS_CONTENT_TYPE,
};

/** OpenMetrics when the scraper asks for it (Prometheus does when exemplar storage is on), else the classic text format. */
export function negotiateFormat(accept: string | undefined): ExpositionFormat {
  return /application\/openmetrics-text/i.test(accept ?? '') ? 'openmetrics' : 'prometheus';
}

/** What prom-client's formatter reads of a metric (its `getMetricsAsString` is untyped). */
interface Renderable {
  name: string;
  type?: string;
  get(): Promise<{ name: string }>;
}
type Formatter = { getMetricsAsString(m: Renderable): Promise<string> };

/**
 * A registry that renders both formats from one set of metrics. It is an OpenMetrics
 * registry (prom-client only lets a histogram keep exemplars there), but prom-client's own
 * `metrics()` of such a registry renames every counter for good (it strips `_total` in
 * place), which would break the next classic scrape. So rendering goes through
 * throw-away formatter registries that only read the metrics: `metrics()` gives the
 * classic format (what existing callers expect) and `render('openmetrics')` the other.
 */
export class DualFormatRegistry extends Registry<OpenMetricsContentType> {
  private labels: Record<string, string> = {};

  constructor() {
    super();
    this.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  }

  override setDefaultLabels(labels: object): void {
    this.labels = { ...(labels as Record<string, string>) };
    super.setDefaultLabels(labels);
  }

  override metrics(): Promise<string> {
    return this.render('prometheus');
  }

  /** One metric in the classic format, without prom-client's renaming (see above). */
  override async getSingleMetricAsString(name: string): Promise<string> {
    const m = this.getSingleMetric(name);
    if (!m) return '';
    return this.formatter('prometheus').getMetricsAsString(m as unknown as Renderable);
  }

  private formatter(format: ExpositionFormat): Formatter {
    const registry = new Registry<RegistryContentType>();
    registry.setContentType(CONTENT_TYPES[format]);
    registry.setDefaultLabels(this.labels);
    return registry as unknown as Formatter;
  }

  async render(format: ExpositionFormat): Promise<string> {
    const formatter = this.formatter(format);
    const open = format === 'openmetrics';
    const parts = await Promise.all(
      (this.getMetricsAsArray() as unknown as Renderable[]).map((m) => {
        // In OpenMetrics the family is named without `_total`; the formatter adds it back on each sample.
        if (!open || m.type !== 'counter') return formatter.getMetricsAsString(m);
        return formatter.getMetricsAsString({
          name: m.name,
          get: async () => {
            const v = await m.get();
            return { ...v, name: v.name.replace(/_total$/, '') };
          },
        });
      }),
    );
    return open ? `${parts.join('\n')}\n# EOF\n` : `${parts.join('\n\n')}\n`;
  }
}
