// librdkafka's mock cluster and a producer on it, for the test file that calls mockKafka().
import { afterAll, beforeAll } from "bun:test";
import { KafkaProducer, MockCluster } from "../../src/kafka/index.ts";

export interface MockKafka {
  mock: MockCluster;
  producer: KafkaProducer;
}

/** One broker and a producer, started before the file's tests and closed after them. */
export function mockKafka(producerProperties: Record<string, string | number | boolean> = { "linger.ms": 1 }): MockKafka {
  const k = {} as MockKafka;
  beforeAll(() => {
    k.mock = new MockCluster(1);
    k.producer = new KafkaProducer({ "bootstrap.servers": k.mock.bootstrapServers, ...producerProperties });
  });
  afterAll(async () => {
    await k.producer.close();
    k.mock.close();
  });
  return k;
}
