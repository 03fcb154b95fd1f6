import {
  context,
  propagation,
  trace,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, NoopSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import {
  envDetector,
  hostDetector,
  osDetector,
  processDetector,
  serviceInstanceIdDetector,
  type DetectedResourceAttributes,
  type ResourceDetector,
} from '@opentelemetry/resources';
import { redactValue } from '../config/redact-text.js';
import { ATTR, MESSAGING_SYSTEM } from './attributes.js';
import { createExporter, traceExportPlan } from './trace-exporters.js';

/**
 * The SDK's process detector reports the command line (process.command_args), and flags
 * carry URLs with passwords (--redis-url, --camera id=rtsp://user:pass@...): this one
 * redacts every string it reports.
 */
const redactedProcessDetector: ResourceDetector = {
  detect(config) {
    const redact = (x: unknown) => (typeof x === 'string' ? redactValue(x) : x);
    const attributes: DetectedResourceAttributes = {};
    for (const [k, v] of Object.entries(processDetector.detect(config).attributes ?? {})) {
      attributes[k] = (Array.isArray(v) ? v.map(redact) : redact(v)) as typeof v;
    }
    return { attributes };
  },
};

/** The SDK's choice (OTEL_NODE_RESOURCE_DETECTORS, default env, process, host), with the process detector redacted. */
function resourceDetectors(env: NodeJS.ProcessEnv): ResourceDetector[] {
  const byName: Record<string, ResourceDetector> = {
    host: hostDetector,
    os: osDetector,
    serviceinstance: serviceInstanceIdDetector,
    process: redactedProcessDetector,
    env: envDetector,
  };
  const names = (env.OTEL_NODE_RESOURCE_DETECTORS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) return [envDetector, redactedProcessDetector, hostDetector];
  if (names.includes('all')) return Object.values(byName);
  if (names.includes('none')) return [];
  return names.flatMap((n) => byName[n] ?? []);
}

export interface Tracing {
  tracer: Tracer;
  /** Whether spans leave the process (OTEL_TRACES_EXPORTER, or an OTLP endpoint; see trace-exporters.ts). */
  exporting: boolean;
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

let active: { sdk: NodeSDK; processors: SpanProcessor[]; exporting: boolean } | undefined;

function envInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const n = Number(env[name]);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

/**
 * Start the OpenTelemetry SDK once per process. Without an exporter configured we still
 * register a real tracer provider: every frame gets a genuine trace id (stored with its
 * journey, linkable later) even when nothing is exported and whatever the sampler decides.
 * Throws InvalidInputError for an OTEL_* value it cannot honour.
 */
export function initTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Tracing {
  if (!active) {
    const plan = traceExportPlan(env);
    // The SDK's default queue (2048) drops spans in bursts: size it for frame rates.
    const processors: SpanProcessor[] = plan.exporters.map(
      (name) =>
        new BatchSpanProcessor(createExporter(name, plan.protocol), {
          maxQueueSize: envInt(env, 'OTEL_BSP_MAX_QUEUE_SIZE', 65_536),
          maxExportBatchSize: envInt(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 1024),
          scheduledDelayMillis: envInt(env, 'OTEL_BSP_SCHEDULE_DELAY', 1000),
          exportTimeoutMillis: envInt(env, 'OTEL_BSP_EXPORT_TIMEOUT', 10_000),
        }),
    );
    const sdk = new NodeSDK({
      serviceName: env.OTEL_SERVICE_NAME || serviceName,
      resourceDetectors: resourceDetectors(env),
      spanProcessors: processors.length ? processors : [new NoopSpanProcessor()],
      logRecordProcessors: [],
      metricReaders: [],
      instrumentations: [],
    });
    sdk.start();
    active = { sdk, processors, exporting: processors.length > 0 };
  }
  const { sdk, processors, exporting } = active;
  return {
    tracer: trace.getTracer('detektr'),
    exporting,
    forceFlush: async () => {
      await Promise.all(processors.map((p) => p.forceFlush()));
    },
    shutdown: async () => {
      if (active?.sdk !== sdk) return;
      active = undefined;
      await Promise.race([sdk.shutdown(), new Promise((r) => setTimeout(r, 5000))]);
    },
  };
}

export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

export function injectContext(ctx: Context = context.active()): TraceCarrier {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return { traceparent: carrier.traceparent, tracestate: carrier.tracestate };
}

export function extractContext(carrier: TraceCarrier): Context {
  const c: Record<string, string> = {};
  if (carrier.traceparent) c.traceparent = carrier.traceparent;
  if (carrier.tracestate) c.tracestate = carrier.tracestate;
  return propagation.extract(context.active(), c);
}

/** A span's ids and its sampled flag, as lifecycle events carry them. */
export function spanIds(span: Span): { traceId: string; spanId: string; sampled: boolean } {
  const sc = span.spanContext();
  return { traceId: sc.traceId, spanId: sc.spanId, sampled: (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED };
}

/** A messaging span named `<operation> <destination>` per the OpenTelemetry conventions. */
export function startMessagingSpan(
  tracer: Tracer,
  operation: 'send' | 'process' | 'receive',
  destination: string,
  parent: Context,
  attributes: Record<string, string | number | undefined> = {},
): Span {
  const attrs: Record<string, string | number> = {
    [ATTR.messagingSystem]: MESSAGING_SYSTEM,
    [ATTR.messagingOperationType]: operation,
    [ATTR.messagingOperationName]: operation,
    [ATTR.messagingDestination]: destination,
  };
  for (const [k, v] of Object.entries(attributes)) if (v !== undefined) attrs[k] = v;
  return tracer.startSpan(
    `${operation} ${destination}`,
    { kind: operation === 'send' ? SpanKind.PRODUCER : SpanKind.CONSUMER, attributes: attrs },
    parent,
  );
}

export function endSpan(span: Span, err?: unknown): void {
  if (err) {
    span.recordException(err instanceof Error ? err : String(err));
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  }
  span.end();
}
