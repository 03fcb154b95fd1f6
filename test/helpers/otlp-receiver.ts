import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  service: string;
  attributes: Record<string, unknown>;
}

export interface OtlpReceiver {
  /** http://127.0.0.1:<port>: OTEL_EXPORTER_OTLP_ENDPOINT for the exporter. */
  url: string;
  spans: ReceivedSpan[];
  /** How each export arrived: the HTTP content type, or `grpc`. */
  encodings: string[];
  close(): Promise<void>;
}

// ---- OTLP/JSON (http/json) ----

interface OtlpAttr {
  key: string;
  value: Record<string, unknown>;
}

function attrValue(v: Record<string, unknown>): unknown {
  return v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue;
}

function spansFromJson(body: string): ReceivedSpan[] {
  const doc = JSON.parse(body) as {
    resourceSpans?: {
      resource: { attributes: OtlpAttr[] };
      scopeSpans?: {
        spans?: { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes?: OtlpAttr[] }[];
      }[];
    }[];
  };
  const out: ReceivedSpan[] = [];
  for (const rs of doc.resourceSpans ?? []) {
    const service = String(attrValue(rs.resource.attributes.find((a) => a.key === 'service.name')?.value ?? {}) ?? '');
    for (const ss of rs.scopeSpans ?? [])
      for (const s of ss.spans ?? [])
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId || undefined,
          name: s.name,
          kind: s.kind,
          service,
          attributes: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, attrValue(a.value)])),
        });
  }
  return out;
}

// ---- OTLP protobuf (http/protobuf and grpc): just the wire format, for the fields we check ----

type Field = { no: number; varint?: bigint; bytes?: Buffer; fixed?: Buffer };

function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const b = buf[i++];
      if (b === undefined) throw new Error('truncated protobuf varint');
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < buf.length) {
    const tag = Number(varint());
    const no = tag >>> 3;
    const wire = tag & 7;
    if (wire === 0) out.push({ no, varint: varint() });
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      out.push({ no, fixed: buf.subarray(i, i + n) });
      i += n;
    } else if (wire === 2) {
      const n = Number(varint());
      out.push({ no, bytes: buf.subarray(i, i + n) });
      i += n;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
  return out;
}

const sub = (fs: Field[], no: number) => fs.filter((f) => f.no === no && f.bytes).map((f) => f.bytes!);
const str = (fs: Field[], no: number) => sub(fs, no)[0]?.toString('utf8') ?? '';
const hex = (fs: Field[], no: number) => sub(fs, no)[0]?.toString('hex') ?? '';

/** AnyValue: string 1, bool 2, int64 3, double 4. */
function anyValue(buf: Buffer): unknown {
  const [f] = fields(buf);
  if (!f) return undefined;
  if (f.no === 1) return f.bytes!.toString('utf8');
  if (f.no === 2) return f.varint === 1n;
  if (f.no === 3) return String(BigInt.asIntN(64, f.varint!));
  if (f.no === 4) return f.fixed!.readDoubleLE(0);
  return undefined;
}

function attributes(list: Buffer[]): Record<string, unknown> {
  return Object.fromEntries(
    list.map((kv) => {
      const fs = fields(kv);
      return [str(fs, 1), sub(fs, 2)[0] ? anyValue(sub(fs, 2)[0]) : undefined];
    }),
  );
}

/** ExportTraceServiceRequest -> ResourceSpans(1) -> Resource(1), ScopeSpans(2) -> Span(2). */
export function spansFromProtobuf(body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of sub(fields(body), 1)) {
    const rsf = fields(rs);
    const resource = sub(rsf, 1)[0];
    const service = String(resource ? (attributes(sub(fields(resource), 1))['service.name'] ?? '') : '');
    for (const ss of sub(rsf, 2))
      for (const span of sub(fields(ss), 2)) {
        const f = fields(span);
        out.push({
          traceId: hex(f, 1),
          spanId: hex(f, 2),
          parentSpanId: hex(f, 4) || undefined,
          name: str(f, 5),
          kind: Number(f.find((x) => x.no === 6)?.varint ?? 0n),
          service,
          attributes: attributes(sub(f, 9)),
        });
      }
  }
  return out;
}

/**
 * An OTLP/HTTP trace receiver on a free port that decodes what the real exporter sends:
 * protobuf (the spec's default, `application/x-protobuf`) or JSON.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const encodings: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const type = req.headers['content-type'] ?? '';
        const body = Buffer.concat(chunks);
        encodings.push(type);
        spans.push(...(type.startsWith('application/x-protobuf') ? spansFromProtobuf(body) : spansFromJson(body.toString('utf8'))));
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    encodings,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const identity = (b: Buffer) => b;

/** An OTLP/gRPC trace receiver (a real grpc-js server, TraceService/Export) on a free port. */
export async function startOtlpGrpcReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const encodings: string[] = [];
  const server = new grpc.Server();
  server.addService(
    {
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
        encodings.push('grpc');
        spans.push(...spansFromProtobuf(call.request));
        done(null, Buffer.alloc(0)); // an empty ExportTraceServiceResponse: all accepted
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    encodings,
    close: () => new Promise<void>((r) => server.tryShutdown(() => r())),
  };
}
