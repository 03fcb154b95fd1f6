import { OTLPTraceExporter as OtlpGrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { ExportResultCode, hrTimeToMicroseconds, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { InvalidInputError } from '../domain/errors.js';

export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json', 'grpc'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];
export const TRACE_EXPORTERS = ['otlp', 'console', 'none'] as const;
type TraceExporterName = (typeof TRACE_EXPORTERS)[number];

export interface TraceExportPlan {
  /** The exporters to run; empty: spans stay in the process. */
  exporters: ('otlp' | 'console')[];
  protocol: OtlpProtocol;
  /** The OTLP endpoint from the environment, if one is set (the exporter's default otherwise). */
  endpoint?: string;
}

const env1 = (env: NodeJS.ProcessEnv, name: string) => env[name]?.trim() || undefined;

/**
 * What the OTEL_* variables ask for. The spec's defaults, with one deliberate exception:
 * with neither OTEL_TRACES_EXPORTER nor an OTLP endpoint set, nothing is exported, so a
 * worker started where no collector runs does not post every second to localhost:4318
 * (and `validate` does not fail on it). Naming an exporter, or setting an endpoint, turns
 * export on; `otlp` is then the default and `http/protobuf` its default protocol.
 * Bad values are usage errors naming the variable, rather than the SDK's silent fallback.
 */
export function traceExportPlan(env: NodeJS.ProcessEnv = process.env): TraceExportPlan {
  const protocolVar = env1(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL')
    ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
    : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = env1(env, protocolVar) ?? 'http/protobuf';
  if (!(OTLP_PROTOCOLS as readonly string[]).includes(protocol))
    throw new InvalidInputError(`${protocolVar} "${protocol}" is not one of ${OTLP_PROTOCOLS.join(', ')}`);
  const endpoint = env1(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? env1(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  const names = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names)
    if (!(TRACE_EXPORTERS as readonly string[]).includes(n))
      throw new InvalidInputError(`OTEL_TRACES_EXPORTER "${n}" is not one of ${TRACE_EXPORTERS.join(', ')}`);
  if (names.includes('none') && names.length > 1)
    throw new InvalidInputError(`OTEL_TRACES_EXPORTER "${env.OTEL_TRACES_EXPORTER}": none cannot be combined with other exporters`);
  const chosen = (names.length ? names : endpoint ? ['otlp'] : ['none']) as TraceExporterName[];
  return {
    exporters: [...new Set(chosen.filter((n): n is 'otlp' | 'console' => n !== 'none'))],
    protocol: protocol as OtlpProtocol,
    endpoint,
  };
}

/** The official OTLP exporter for the protocol; each reads its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*. */
export function otlpExporter(protocol: OtlpProtocol): SpanExporter {
  if (protocol === 'grpc') return new OtlpGrpcExporter();
  if (protocol === 'http/json') return new OtlpJsonExporter();
  return new OtlpProtoExporter();
}

/**
 * `OTEL_TRACES_EXPORTER=console`: one JSON line per span on stderr. The SDK's
 * ConsoleSpanExporter writes to stdout, which holds command results (`run` prints its
 * summary there, `--json` output is parsed).
 */
export class StderrSpanExporter implements SpanExporter {
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    const lines = spans.map((s) => {
      const ctx = s.spanContext();
      return JSON.stringify({
        span: s.name,
        traceId: ctx.traceId,
        spanId: ctx.spanId,
        parentSpanId: s.parentSpanContext?.spanId,
        kind: s.kind,
        service: s.resource.attributes['service.name'],
        startUs: hrTimeToMicroseconds(s.startTime),
        durationUs: hrTimeToMicroseconds(s.duration),
        status: s.status,
        attributes: s.attributes,
      });
    });
    process.stderr.write(lines.join('\n') + '\n', () => done({ code: ExportResultCode.SUCCESS }));
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

export function createExporter(name: 'otlp' | 'console', protocol: OtlpProtocol): SpanExporter {
  return name === 'console' ? new StderrSpanExporter() : otlpExporter(protocol);
}
