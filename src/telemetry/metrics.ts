import { Counter, Gauge, Histogram, collectDefaultMetrics } from 'prom-client';
import { FRAME_FLAGS } from '../capture/frame-check.js';
import { DualFormatRegistry } from './exposition.js';
import { TracedHistogram } from './traced-histogram.js';
import {
  BREAKER_STATES,
  DEAD_LETTER_REASONS,
  DROP_REASONS,
  dropReasonsOf,
  PROCESS_OUTCOMES,
  RECONNECT_REASONS,
  REROUTE_REASONS,
  seedCounter,
} from './metric-seeds.js';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Every metric detektr exports, defined once. Labels are bounded sets (camera, processor,
 * stream, reason): never a frame id.
 */
export function createMetrics(component: string) {
  const registry = new DualFormatRegistry();
  registry.setDefaultLabels({ component });
  collectDefaultMetrics({ register: registry });
  // Gauges named like counters fail `promtool check metrics`; their unsuffixed siblings
  // (nodejs_active_handles{type} etc.) carry the same numbers: sum() them for the total.
  for (const name of NON_COUNTER_TOTALS) registry.removeSingleMetric(name);
  const r = [registry];
  const m = {
    registry,
    framesCaptured: new Counter({
      name: 'detektr_frames_captured_total',
      help: 'frames sampled from cameras',
      labelNames: ['camera'],
      registers: r,
    }),
    framesPublished: new Counter({
      name: 'detektr_frames_published_total',
      help: 'frames published to the captured stream',
      labelNames: ['camera'],
      registers: r,
    }),
    framesDropped: new Counter({
      name: 'detektr_frames_dropped_total',
      help: 'frames dropped, by reason (each also has a frame.dropped event)',
      labelNames: ['reason'],
      registers: r,
    }),
    captureErrors: new Counter({
      name: 'detektr_capture_errors_total',
      help: 'camera open/read failures',
      labelNames: ['camera'],
      registers: r,
    }),
    encodeSeconds: new TracedHistogram({
      name: 'detektr_capture_encode_seconds',
      help: 'decode (since the previous sampled frame) + checks + JPEG time per published frame',
      labelNames: ['camera'],
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    framesRouted: new Counter({
      name: 'detektr_frames_routed_total',
      help: 'frames handed to a processor stream',
      labelNames: ['processor', 'capability'],
      registers: r,
    }),
    framesProcessed: new Counter({
      name: 'detektr_frames_processed_total',
      help: 'frames processed, by outcome',
      labelNames: ['processor', 'outcome'],
      registers: r,
    }),
    processingSeconds: new TracedHistogram({
      name: 'detektr_processing_seconds',
      help: 'processor run time per frame',
      labelNames: ['processor'],
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    endToEndSeconds: new TracedHistogram({
      name: 'detektr_end_to_end_seconds',
      help: 'capture to processing completed',
      labelNames: ['processor'],
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    eventsStored: new Counter({
      name: 'detektr_events_stored_total',
      help: 'lifecycle events written to PostgreSQL (new, not replays)',
      registers: r,
    }),
    storeBatchSeconds: new Histogram({
      name: 'detektr_store_batch_seconds',
      help: 'time to write one batch of events',
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    storeErrors: new Counter({ name: 'detektr_store_errors_total', help: 'failed batch writes (retried)', registers: r }),
    entriesMalformed: new Counter({
      name: 'detektr_stream_malformed_total',
      help: 'entries that failed to decode (dead-lettered)',
      labelNames: ['stream'],
      registers: r,
    }),
    entriesDeadLettered: new Counter({
      name: 'detektr_stream_dead_lettered_total',
      help: 'entries moved to the dead-letter stream',
      labelNames: ['stream', 'reason'],
      registers: r,
    }),
    entriesReclaimed: new Counter({
      name: 'detektr_stream_reclaimed_total',
      help: 'pending entries reclaimed from dead consumers',
      labelNames: ['stream'],
      registers: r,
    }),
    readErrors: new Counter({
      name: 'detektr_stream_read_errors_total',
      help: 'failed stream reads (retried with backoff)',
      labelNames: ['stream'],
      registers: r,
    }),
    processorsRegistered: new Gauge({
      name: 'detektr_processors_registered',
      help: 'live processors seen by the buffer',
      labelNames: ['capability'],
      registers: r,
    }),
    // buffer (orchestrator)
    routingSeconds: new Histogram({
      name: 'detektr_routing_decision_seconds',
      help: 'time to choose the processors of one frame',
      labelNames: ['strategy'],
      buckets: [0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.001, 0.01],
      registers: r,
    }),
    bufferWaitSeconds: new Histogram({
      name: 'detektr_buffer_wait_seconds',
      help: "time a frame waited in the buffer's lanes before hand-off",
      labelNames: ['lane'],
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    pressureLevel: new Gauge({
      name: 'detektr_buffer_pressure_level',
      help: 'backpressure level: 0 normal, 1 high (intake slowed), 2 critical (intake paused / shedding)',
      registers: r,
    }),
    backlog: new Gauge({
      name: 'detektr_buffer_backlog',
      help: "frames waiting in the buffer's priority lanes",
      labelNames: ['lane'],
      registers: r,
    }),
    queueDepth: new Gauge({
      name: 'detektr_processor_queue_depth',
      help: "frames in a processor's ready stream (not yet acked)",
      labelNames: ['processor'],
      registers: r,
    }),
    queueCapacity: new Gauge({
      name: 'detektr_processor_capacity',
      help: 'frames a processor (all its instances) holds at once',
      labelNames: ['processor'],
      registers: r,
    }),
    breakerState: new Gauge({
      name: 'detektr_breaker_state',
      help: 'circuit breaker per processor: 0 closed, 1 half-open, 2 open',
      labelNames: ['processor'],
      registers: r,
    }),
    breakerTransitions: new Counter({
      name: 'detektr_breaker_transitions_total',
      help: 'circuit breaker state changes',
      labelNames: ['processor', 'to'],
      registers: r,
    }),
    capabilityUnserved: new Counter({
      name: 'detektr_capability_unserved_total',
      help: 'frames that asked for a capability no live processor offered (served for their other capabilities)',
      labelNames: ['capability'],
      registers: r,
    }),
    framesRerouted: new Counter({
      name: 'detektr_frames_rerouted_total',
      help: 'frames moved from a processor that died or whose breaker is open to another of the capability',
      labelNames: ['processor', 'reason'],
      registers: r,
    }),
    // process (runtime)
    duplicatesSuppressed: new Counter({
      name: 'detektr_duplicates_suppressed_total',
      help: "commits skipped because the frame's stage was already committed (redelivery after a reclaim)",
      labelNames: ['processor'],
      registers: r,
    }),
    framesInFlight: new Gauge({
      name: 'detektr_processor_in_flight',
      help: 'frames this processor instance is working on',
      labelNames: ['processor'],
      registers: r,
    }),
    // capture (per camera; reason: corrupt, black, frozen, backlog, publish_failed)
    captureDropped: new Counter({
      name: 'detektr_capture_dropped_total',
      help: 'sampled frames dropped by capture, per camera and reason (also in detektr_frames_dropped_total)',
      labelNames: ['camera', 'reason'],
      registers: r,
    }),
    captureFlagged: new Counter({
      name: 'detektr_capture_flagged_total',
      help: 'frames published with a validation flag (corrupt, black, frozen)',
      labelNames: ['camera', 'flag'],
      registers: r,
    }),
    captureReconnects: new Counter({
      name: 'detektr_capture_reconnects_total',
      help: 'camera reconnect attempts after a failure or stall',
      labelNames: ['camera', 'reason'],
      registers: r,
    }),
    captureDecodeSeconds: new Histogram({
      name: 'detektr_capture_decode_seconds',
      help: 'decode time per decoded frame (sampled or not)',
      labelNames: ['camera'],
      buckets: [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.5],
      registers: r,
    }),
    captureStreamUp: new Gauge({
      name: 'detektr_capture_stream_up',
      help: '1 while frames flow from the camera, 0 while it is offline',
      labelNames: ['camera'],
      registers: r,
    }),
    captureFrozen: new Gauge({
      name: 'detektr_capture_frozen',
      help: '1 while the camera picture is frozen',
      labelNames: ['camera'],
      registers: r,
    }),
    captureLastFrameAge: new Gauge({
      name: 'detektr_capture_last_frame_age_seconds',
      help: 'time since the camera last delivered a sampled frame',
      labelNames: ['camera'],
      registers: r,
    }),
    captureLag: new Gauge({
      name: 'detektr_capture_lag_seconds',
      help: "how far behind the camera's own clock capture runs (grows when the host cannot keep up)",
      labelNames: ['camera'],
      registers: r,
    }),
    captureCpuSeconds: new Counter({
      name: 'detektr_capture_cpu_seconds_total',
      help: 'CPU time of the camera reader thread (decode, checks, JPEG)',
      labelNames: ['camera'],
      registers: r,
    }),
  };
  seedCounter(m.framesDropped, {}, { reason: dropReasonsOf(component) });
  const seeded = new Set<string>();
  const once = (key: string, seed: () => void) => {
    if (!seeded.has(key)) {
      seeded.add(key);
      seed();
    }
  };
  return {
    ...m,
    /** Every per-camera counter at 0 for `camera` (capture calls it for each configured camera). */
    seedCamera: (camera: string) =>
      once(`camera:${camera}`, () => {
        for (const c of [m.framesCaptured, m.framesPublished, m.captureErrors, m.captureCpuSeconds]) seedCounter(c, { camera });
        seedCounter(m.captureDropped, { camera }, { reason: DROP_REASONS.capture });
        seedCounter(m.captureFlagged, { camera }, { flag: FRAME_FLAGS });
        seedCounter(m.captureReconnects, { camera }, { reason: RECONNECT_REASONS });
      }),
    /** The processor runtime's counters at 0 for `processor`. */
    seedProcessor: (processor: string) =>
      once(`processor:${processor}`, () => {
        seedCounter(m.framesProcessed, { processor }, { outcome: PROCESS_OUTCOMES });
        seedCounter(m.duplicatesSuppressed, { processor });
      }),
    /** The buffer's per-processor counters at 0, when it first sees `processor`. */
    seedRoutedProcessor: (processor: string) =>
      once(`routed:${processor}`, () => {
        seedCounter(m.breakerTransitions, { processor }, { to: BREAKER_STATES });
        seedCounter(m.framesRerouted, { processor }, { reason: REROUTE_REASONS });
      }),
    /** Every per-stream counter at 0 for the stream key `stream` (each consumer calls it for the stream it reads). */
    seedStream: (stream: string) =>
      once(`stream:${stream}`, () => {
        for (const c of [m.entriesMalformed, m.entriesReclaimed, m.readErrors]) seedCounter(c, { stream });
        seedCounter(m.entriesDeadLettered, { stream }, { reason: DEAD_LETTER_REASONS });
      }),
  };
}

/** prom-client's default gauges whose names end in `_total`. */
const NON_COUNTER_TOTALS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export type Metrics = ReturnType<typeof createMetrics>;
