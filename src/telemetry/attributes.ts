/** Span attribute names in one place (OpenTelemetry messaging conventions + detektr's own). */
export const ATTR = {
  messagingSystem: 'messaging.system',
  messagingOperationType: 'messaging.operation.type',
  messagingOperationName: 'messaging.operation.name',
  messagingDestination: 'messaging.destination.name',
  messagingConsumerGroup: 'messaging.consumer.group.name',
  messagingMessageId: 'messaging.message.id',
  messagingBatchCount: 'messaging.batch.message_count',
  frameId: 'frame.id',
  cameraId: 'camera.id',
  frameWidth: 'frame.width',
  frameHeight: 'frame.height',
  frameSizeBytes: 'frame.size_bytes',
  processorId: 'processor.id',
  capability: 'processor.capability',
  attempt: 'detektr.attempt',
  eventType: 'detektr.event.type',
  component: 'detektr.component',
} as const;

export const MESSAGING_SYSTEM = 'redis';
