import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Every metric detektr exports, defined once. Labels are bounded sets (camera, processor,
 * stream, reason): never a frame id.
 */
export function createMetrics(component: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  collectDefaultMetrics({ register: registry, prefix: 'detektr_process_' });
  const r = [registry];
  return {
    registry,
    framesCaptured: new Counter({ name: 'detektr_frames_captured_total', help: 'frames sampled from cameras', labelNames: ['camera'], registers: r }),
    framesPublished: new Counter({ name: 'detektr_frames_published_total', help: 'frames published to the captured stream', labelNames: ['camera'], registers: r }),
    framesDropped: new Counter({ name: 'detektr_frames_dropped_total', help: 'frames dropped, by reason (each also has a frame.dropped event)', labelNames: ['reason'], registers: r }),
    captureErrors: new Counter({ name: 'detektr_capture_errors_total', help: 'camera open/read failures', labelNames: ['camera'], registers: r }),
    encodeSeconds: new Histogram({ name: 'detektr_capture_encode_seconds', help: 'decode+encode time per published frame', labelNames: ['camera'], buckets: LATENCY_BUCKETS, registers: r }),
    framesRouted: new Counter({ name: 'detektr_frames_routed_total', help: 'frames handed to a processor stream', labelNames: ['processor', 'capability'], registers: r }),
    framesProcessed: new Counter({ name: 'detektr_frames_processed_total', help: 'frames processed, by outcome', labelNames: ['processor', 'outcome'], registers: r }),
    processingSeconds: new Histogram({ name: 'detektr_processing_seconds', help: 'processor run time per frame', labelNames: ['processor'], buckets: LATENCY_BUCKETS, registers: r }),
    endToEndSeconds: new Histogram({ name: 'detektr_end_to_end_seconds', help: 'capture to processing completed', labelNames: ['processor'], buckets: LATENCY_BUCKETS, registers: r }),
    eventsStored: new Counter({ name: 'detektr_events_stored_total', help: 'lifecycle events written to PostgreSQL (new, not replays)', registers: r }),
    storeBatchSeconds: new Histogram({ name: 'detektr_store_batch_seconds', help: 'time to write one batch of events', buckets: LATENCY_BUCKETS, registers: r }),
    storeErrors: new Counter({ name: 'detektr_store_errors_total', help: 'failed batch writes (retried)', registers: r }),
    entriesMalformed: new Counter({ name: 'detektr_stream_malformed_total', help: 'entries that failed to decode (dead-lettered)', labelNames: ['stream'], registers: r }),
    entriesDeadLettered: new Counter({ name: 'detektr_stream_dead_lettered_total', help: 'entries moved to the dead-letter stream', labelNames: ['stream', 'reason'], registers: r }),
    entriesReclaimed: new Counter({ name: 'detektr_stream_reclaimed_total', help: 'pending entries reclaimed from dead consumers', labelNames: ['stream'], registers: r }),
    readErrors: new Counter({ name: 'detektr_stream_read_errors_total', help: 'failed stream reads (retried with backoff)', labelNames: ['stream'], registers: r }),
    processorsRegistered: new Gauge({ name: 'detektr_processors_registered', help: 'live processors seen by the buffer', labelNames: ['capability'], registers: r }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
