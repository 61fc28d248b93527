// Test support: librdkafka's mock cluster and the API keys for its fault injection.
import { addon, type NativeMock } from "./addon.ts";
import { callSync, KafkaError } from "./errors.ts";

/** librdkafka's in-process mock cluster (rdkafka_mock.h): real brokers on 127.0.0.1 for tests. */
export class MockCluster {
  #m: NativeMock;
  readonly bootstrapServers: string;
  constructor(brokers = 1) {
    this.#m = callSync(() => new (addon().MockCluster)(brokers, {}));
    this.bootstrapServers = this.#m.bootstrapServers();
  }
  createTopic(topic: string, partitions: number, replicationFactor = 1): void {
    callSync(() => this.#m.createTopic(topic, partitions, replicationFactor));
  }
  brokerDown(brokerId: number): void {
    callSync(() => this.#m.brokerDown(brokerId));
  }
  brokerUp(brokerId: number): void {
    callSync(() => this.#m.brokerUp(brokerId));
  }
  brokerRtt(brokerId: number, ms: number): void {
    callSync(() => this.#m.brokerRtt(brokerId, ms));
  }
  /** Makes the next requests of Kafka API `apiKey` fail with these error names, in order. */
  pushRequestErrors(apiKey: number, errors: string[]): void {
    const codes = errors.map((e) => {
      const c = addon().errorCodes[e.replace(/^ERR_/, "")];
      if (c === undefined) throw new KafkaError(`unknown Kafka error name ${e}`, "ERR__INVALID_ARG");
      return c;
    });
    callSync(() => this.#m.pushRequestErrors(apiKey, codes));
  }
  clearRequestErrors(apiKey: number): void {
    callSync(() => this.#m.clearRequestErrors(apiKey));
  }
  close(): void {
    this.#m.close();
  }
}

/** Kafka protocol API keys used for fault injection. */
export const ApiKey = { Produce: 0, Fetch: 1, ListOffsets: 2, Metadata: 3, OffsetCommit: 8, OffsetFetch: 9, FindCoordinator: 10, JoinGroup: 11, Heartbeat: 12, SyncGroup: 14 } as const;
