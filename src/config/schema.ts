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
  /** For string keys: the only values allowed. */
  choices?: readonly string[];
  description: string;
}

export const CONFIG_KEYS = {
  redisUrl: {
    type: 'url',
    default: 'redis://127.0.0.1:6379',
    env: 'REDIS_URL',
    secret: true,
    description: 'Redis holding the streams, payloads and registry',
  },
  redisTlsCa: {
    type: 'string',
    env: 'REDIS_TLS_CA',
    description: "PEM file of the CA that signed the Redis servers' certificates (rediss:// forms only; default: the system CAs)",
  },
  redisTlsCert: {
    type: 'string',
    env: 'REDIS_TLS_CERT',
    description: 'PEM file of the client certificate sent to Redis (rediss:// forms only; with redisTlsKey)',
  },
  redisTlsKey: {
    type: 'string',
    env: 'REDIS_TLS_KEY',
    description: 'PEM file of the private key of redisTlsCert (rediss:// forms only)',
  },
  databaseUrl: {
    type: 'url',
    default: 'postgres://postgres@127.0.0.1:5432/detektr',
    env: 'DATABASE_URL',
    secret: true,
    description: 'PostgreSQL for frame tracking',
  },
  pgPoolSize: {
    type: 'int',
    default: 10,
    env: 'DETEKTR_PG_POOL_SIZE',
    min: 1,
    max: 100,
    description: 'PostgreSQL connections each pool of run, store and migrate may open',
  },
  dbSchema: { type: 'string', default: 'detektr', env: 'DETEKTR_DB_SCHEMA', description: 'PostgreSQL schema holding the detektr tables' },
  prefix: {
    type: 'prefix',
    default: 'detektr:',
    env: 'DETEKTR_PREFIX',
    description: 'prefix of every Redis key, so pipelines can share one Redis',
  },
  shards: {
    type: 'int',
    default: 1,
    env: 'DETEKTR_SHARDS',
    min: 1,
    max: 1024,
    description:
      "Redis shards the pipeline's keys are spread over (hash tags {s0}..; a camera's frames stay in one); every worker of a pipeline must use the same number",
  },
  cameraShards: {
    type: 'list',
    default: [],
    env: 'DETEKTR_CAMERA_SHARDS',
    description: 'capture: id=shard pins a camera to a shard (default: by a hash of the camera id)',
  },
  logLevel: { type: 'level', default: 'info', env: 'DETEKTR_LOG_LEVEL', description: 'debug | info | warn | error' },
  metricsHost: {
    type: 'string',
    default: '127.0.0.1',
    env: 'DETEKTR_METRICS_HOST',
    description: 'address the /metrics, /healthz, /readyz server binds to',
  },
  metricsPort: {
    type: 'int',
    env: 'DETEKTR_METRICS_PORT',
    min: 0,
    max: 65535,
    description: 'port of /metrics, /healthz, /readyz (0: any free port; default per command)',
  },
  streamMaxLen: {
    type: 'int',
    default: 100_000,
    env: 'DETEKTR_STREAM_MAXLEN',
    min: 100,
    description: 'approximate cap on every stream (MAXLEN ~)',
  },
  payloadTtl: {
    type: 'duration',
    default: 300_000,
    env: 'DETEKTR_PAYLOAD_TTL',
    min: 1000,
    description: 'how long a frame image stays in Redis',
  },
  maxDeliveries: {
    type: 'int',
    default: 5,
    env: 'DETEKTR_MAX_DELIVERIES',
    min: 1,
    max: 1000,
    description: 'deliveries before an entry goes to the dead-letter stream',
  },
  claimIdle: {
    type: 'duration',
    default: 30_000,
    env: 'DETEKTR_CLAIM_IDLE',
    min: 100,
    description: 'idle time after which a pending entry of a dead consumer is reclaimed',
  },
  blockTime: {
    type: 'duration',
    default: 1000,
    env: 'DETEKTR_BLOCK_TIME',
    min: 10,
    max: 30_000,
    description: 'longest blocking read before a worker checks for shutdown',
  },
  batchSize: { type: 'int', default: 100, env: 'DETEKTR_BATCH_SIZE', min: 1, max: 10_000, description: 'entries read per call' },
  heartbeatInterval: {
    type: 'duration',
    default: 2000,
    env: 'DETEKTR_HEARTBEAT_INTERVAL',
    min: 100,
    description: 'processor heartbeat period',
  },
  processorTtl: {
    type: 'duration',
    default: 10_000,
    env: 'DETEKTR_PROCESSOR_TTL',
    min: 500,
    description: 'a processor without heartbeat for this long is gone',
  },
  fps: { type: 'number', default: 5, env: 'DETEKTR_FPS', min: 0.01, max: 120, description: 'frames per second sampled from each camera' },
  jpegQuality: { type: 'int', default: 80, env: 'DETEKTR_JPEG_QUALITY', min: 1, max: 100, description: 'JPEG quality of frame payloads' },
  cameras: {
    type: 'list',
    default: [],
    env: 'DETEKTR_CAMERAS',
    description: 'cameras as id=url (testsrc, lavfi:<graph>, file path, rtsp://)',
  },
  traceUiUrl: { type: 'url', env: 'DETEKTR_TRACE_UI_URL', description: 'trace UI base URL (Jaeger), for links in trace find' },
  dataDir: {
    type: 'string',
    default: '.detektr',
    env: 'DETEKTR_DATA_DIR',
    description: 'directory of the embedded backends (run without REDIS_URL / DATABASE_URL): pgdata/ and run.json',
  },
  strategy: {
    type: 'string',
    default: 'least-loaded',
    env: 'DETEKTR_STRATEGY',
    choices: ['least-loaded', 'camera-affinity', 'round-robin'],
    description: 'buffer: how a processor is chosen among those of a capability',
  },
  apiToken: {
    type: 'string',
    env: 'DETEKTR_API_TOKEN',
    secret: true,
    description:
      'buffer: bearer token its HTTP API requires on POST/DELETE (register, unregister, heartbeat); required when metricsHost is not loopback',
  },
  apiPort: {
    type: 'int',
    env: 'DETEKTR_API_PORT',
    min: 0,
    max: 65535,
    description: 'buffer: port of its HTTP API (/processors, /status) with /metrics /healthz /readyz (default: the metrics port, 9102)',
  },
  shedPolicy: {
    type: 'string',
    default: 'lowest-priority',
    env: 'DETEKTR_SHED_POLICY',
    choices: ['lowest-priority', 'oldest'],
    description: 'buffer: which waiting frames are dropped first under critical pressure',
  },
  pressureHigh: {
    type: 'number',
    default: 4,
    env: 'DETEKTR_PRESSURE_HIGH',
    min: 0.1,
    max: 10_000,
    description: "buffer: waiting frames, in multiples of the processors' capacity, at which intake slows",
  },
  pressureCritical: {
    type: 'number',
    default: 16,
    env: 'DETEKTR_PRESSURE_CRITICAL',
    min: 0.1,
    max: 10_000,
    description: 'buffer: waiting frames, in multiples of capacity, at which intake pauses and then sheds',
  },
  starvationLimit: {
    type: 'int',
    default: 8,
    env: 'DETEKTR_STARVATION_LIMIT',
    min: 1,
    max: 1000,
    description: 'buffer: dequeues a waiting lower-priority lane may be passed over before it is served',
  },
  breakerFailures: {
    type: 'int',
    default: 5,
    env: 'DETEKTR_BREAKER_FAILURES',
    min: 1,
    max: 10_000,
    description: "buffer: consecutive failed frames that open a processor's circuit breaker",
  },
  breakerCooldown: {
    type: 'duration',
    default: 10_000,
    env: 'DETEKTR_BREAKER_COOLDOWN',
    min: 100,
    description: 'buffer: how long a breaker stays open before a probe frame (half-open)',
  },
  // process (every processor under `run`; `detektr process` has them as flags too)
  concurrency: {
    type: 'int',
    default: 1,
    env: 'DETEKTR_CONCURRENCY',
    min: 1,
    max: 1024,
    description: 'process: frames one processor instance processes at once',
  },
  frameTimeout: {
    type: 'duration',
    default: 30_000,
    env: 'DETEKTR_FRAME_TIMEOUT',
    min: 1,
    description: 'process: longest one frame may take before it fails',
  },
  // capture (defaults for every camera; a camera's entry in the config file may override them)
  rtspTransport: {
    type: 'string',
    default: 'tcp',
    env: 'DETEKTR_RTSP_TRANSPORT',
    choices: ['tcp', 'udp'],
    description: 'capture: RTSP transport (tcp or udp)',
  },
  cameraTimeout: {
    type: 'duration',
    default: 5000,
    env: 'DETEKTR_CAMERA_TIMEOUT',
    min: 100,
    max: 600_000,
    description: 'capture: open and read timeout of every FFmpeg call; a stalled camera is detected within about this (at most 2x)',
  },
  stallTimeout: {
    type: 'duration',
    default: 10_000,
    env: 'DETEKTR_STALL_TIMEOUT',
    min: 100,
    max: 3_600_000,
    description: 'capture: reconnect a camera that decodes no frame for this long (stall watchdog)',
  },
  reconnectMax: {
    type: 'duration',
    default: 30_000,
    env: 'DETEKTR_RECONNECT_MAX',
    min: 100,
    max: 3_600_000,
    description: 'capture: longest wait between reconnects (exponential backoff with full jitter)',
  },
  offlineGrace: {
    type: 'duration',
    default: 30_000,
    env: 'DETEKTR_OFFLINE_GRACE',
    min: 0,
    description: 'capture: /readyz fails while a camera is offline longer than this',
  },
  invalidFrames: {
    type: 'string',
    default: 'corrupt=drop,black=flag,frozen=flag',
    env: 'DETEKTR_INVALID_FRAMES',
    description:
      'capture: what to do with corrupt, black and frozen frames: drop, flag or off (all, or per check: corrupt=drop,black=flag,frozen=off)',
  },
  frozenAfter: {
    type: 'duration',
    default: 10_000,
    env: 'DETEKTR_FROZEN_AFTER',
    min: 100,
    description: 'capture: a picture unchanged for this long is frozen (camera.frozen)',
  },
  thumbnailWidth: {
    type: 'int',
    default: 0,
    env: 'DETEKTR_THUMBNAIL_WIDTH',
    min: 0,
    max: 1920,
    description: 'capture: width of a gray thumbnail stored beside each JPEG (0: none)',
  },
  jpegWidth: {
    type: 'int',
    default: 0,
    env: 'DETEKTR_JPEG_WIDTH',
    min: 0,
    max: 16384,
    description: 'capture: downscale JPEGs wider than this, keeping the aspect ratio (0: full resolution)',
  },
  detectUrls: {
    type: 'list',
    default: [],
    env: 'DETEKTR_DETECT_URLS',
    description:
      "capture: id=url of a camera's lower-resolution stream (sub-stream) to take frames from instead of its url, which capture then does not open",
  },
  jpegTables: {
    type: 'string',
    default: 'standard',
    env: 'DETEKTR_JPEG_TABLES',
    choices: ['standard', 'optimal'],
    description:
      'capture: JPEG Huffman tables: standard (JPEG Annex K, ~20 % less encoder CPU) or optimal (built per picture: ~16 % smaller files, the same pixels)',
  },
  hwaccel: {
    type: 'string',
    default: 'none',
    env: 'DETEKTR_HWACCEL',
    choices: ['none', 'vaapi', 'cuda', 'qsv', 'auto'],
    description: 'capture: decode on a GPU: none, vaapi, cuda, qsv, or auto (the first that opens; else software, reported)',
  },
} as const satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof CONFIG_KEYS;
