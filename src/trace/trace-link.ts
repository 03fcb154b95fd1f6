/** A link to the trace in the configured trace UI (Jaeger's /trace/<id> page). */
export function traceLink(baseUrl: string | undefined, traceId: string | undefined | null): string | undefined {
  if (!baseUrl || !traceId) return undefined;
  return `${baseUrl.replace(/\/+$/, '')}/trace/${traceId}`;
}
