// The librdkafka client: a batch consumer, a producer, typed errors, and (for tests and benches)
// librdkafka's mock cluster. Everything outside src/kafka imports from here.
export { librdkafkaFeatures, librdkafkaVersion, propertyProblems, UNSAFE_PROPERTIES } from "./addon.ts";
export { MessageBatch } from "./batch.ts";
export { type ClientHooks, KafkaConsumer } from "./consumer.ts";
export { KafkaError } from "./errors.ts";
export { ApiKey, MockCluster } from "./mock.ts";
export { KafkaProducer, type ProduceMessage } from "./producer.ts";
export type {
  ClientEvents,
  DeliveryReport,
  ErrorEvent,
  LogEvent,
  Properties,
  RebalanceEvent,
  TopicPartition,
  TopicPartitionOffset,
} from "./types.ts";
