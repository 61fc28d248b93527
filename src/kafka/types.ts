// The shapes the addon hands to JS and the wrapper's public types.

/** librdkafka properties; numbers and booleans are passed as their text. */
export type Properties = Record<string, string | number | boolean>;

export interface TopicPartition {
  topic: string;
  partition: number;
}
export interface TopicPartitionOffset extends TopicPartition {
  offset: number;
  error?: string;
}
export interface RebalanceEvent {
  type: "assign" | "revoke";
  partitions: TopicPartitionOffset[];
}
export interface LogEvent {
  level: number;
  facility: string;
  message: string;
}
export interface ErrorEvent {
  code: string;
  errno: number;
  message: string;
  fatal: boolean;
  topic?: string;
  partition?: number;
}
export interface ClientEvents {
  logs: LogEvent[];
  droppedLogs: number;
  errors: ErrorEvent[];
  rebalances: RebalanceEvent[];
  fatal?: boolean;
}
export interface DeliveryReport extends ClientEvents {
  delivered: number;
  failed: TopicPartitionOffset[];
}

/** Columnar headers: entry j belongs to message index[j]; a length of -1 is a null value. */
export interface RawHeaders {
  index: Int32Array;
  names: string[];
  lens: Int32Array;
  values: Buffer;
}

/** One consume() result as the addon returns it: columns, lengths of -1 for null. */
export interface RawBatch extends ClientEvents {
  count: number;
  topicNames: string[];
  topicIdx: Uint16Array;
  partitions: Int32Array;
  offsets: Float64Array;
  timestamps: Float64Array;
  keyLens: Int32Array;
  valueLens: Int32Array;
  keys: Buffer;
  values: Buffer;
  headers?: RawHeaders;
  fatal: boolean;
}
