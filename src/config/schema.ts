/**
 * Every configuration key in one table: its type, default, environment variable and
 * whether it is a secret. Flags, environment and the config file all resolve through it.
 */
export type KeyType = 'string' | 'url' | 'int' | 'number' | 'duration' | 'bool' | 'list' | 'prefix' | 'level';

export interface KeySpec {
  type: KeyType;
  default?: unknown;
  env?: string;
  /** Values may carry credentials (URL user:pass@): always redacted when printed. */
  secret?: boolean;
  min?: number;
  max?: number;
  description: string;
}

export const CONFIG_KEYS = {
  redisUrl: { type: 'url', default: 'redis://127.0.0.1:6379', env: 'REDIS_URL', secret: true, description: 'Redis holding the streams, payloads and registry' },
  databaseUrl: { type: 'url', default: 'postgres://postgres@127.0.0.1:5432/detektr', env: 'DATABASE_URL', secret: true, description: 'PostgreSQL for frame tracking' },
  dbSchema: { type: 'string', default: 'detektr', env: 'DETEKTR_DB_SCHEMA', description: 'PostgreSQL schema holding the detektr tables' },
  prefix: { type: 'prefix', default: 'detektr:', env: 'DETEKTR_PREFIX', description: 'prefix of every Redis key, so pipelines can share one Redis' },
  logLevel: { type: 'level', default: 'info', env: 'DETEKTR_LOG_LEVEL', description: 'debug | info | warn | error' },
  metricsHost: { type: 'string', default: '127.0.0.1', env: 'DETEKTR_METRICS_HOST', description: 'address the /metrics, /healthz, /readyz server binds to' },
  metricsPort: { type: 'int', env: 'DETEKTR_METRICS_PORT', min: 0, max: 65535, description: 'port of /metrics, /healthz, /readyz (0: any free port; default per command)' },
  streamMaxLen: { type: 'int', default: 100_000, env: 'DETEKTR_STREAM_MAXLEN', min: 100, description: 'approximate cap on every stream (MAXLEN ~)' },
  payloadTtl: { type: 'duration', default: 300_000, env: 'DETEKTR_PAYLOAD_TTL', min: 1000, description: 'how long a frame image stays in Redis' },
  maxDeliveries: { type: 'int', default: 5, env: 'DETEKTR_MAX_DELIVERIES', min: 1, max: 1000, description: 'deliveries before an entry goes to the dead-letter stream' },
  claimIdle: { type: 'duration', default: 30_000, env: 'DETEKTR_CLAIM_IDLE', min: 100, description: 'idle time after which a pending entry of a dead consumer is reclaimed' },
  blockTime: { type: 'duration', default: 1000, env: 'DETEKTR_BLOCK_TIME', min: 10, max: 30_000, description: 'longest blocking read before a worker checks for shutdown' },
  batchSize: { type: 'int', default: 100, env: 'DETEKTR_BATCH_SIZE', min: 1, max: 10_000, description: 'entries read per call' },
  heartbeatInterval: { type: 'duration', default: 2000, env: 'DETEKTR_HEARTBEAT_INTERVAL', min: 100, description: 'processor heartbeat period' },
  processorTtl: { type: 'duration', default: 10_000, env: 'DETEKTR_PROCESSOR_TTL', min: 500, description: 'a processor without heartbeat for this long is gone' },
  fps: { type: 'number', default: 5, env: 'DETEKTR_FPS', min: 0.01, max: 120, description: 'frames per second sampled from each camera' },
  jpegQuality: { type: 'int', default: 80, env: 'DETEKTR_JPEG_QUALITY', min: 1, max: 100, description: 'JPEG quality of frame payloads' },
  cameras: { type: 'list', default: [], env: 'DETEKTR_CAMERAS', description: 'cameras as id=url (testsrc, lavfi:<graph>, file path, rtsp://)' },
  traceUiUrl: { type: 'url', env: 'DETEKTR_TRACE_UI_URL', description: 'trace UI base URL (Jaeger), for links in trace find' },
} as const satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof CONFIG_KEYS;
