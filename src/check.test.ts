import { expect, test } from "bun:test";
import { missingFeatures } from "./check.ts";

test("check names the features a config needs that librdkafka was built without", () => {
  expect(missingFeatures({ "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "compression.type": "zstd" }, ["ssl", "sasl", "sasl_scram", "zstd"])).toEqual([]);
  expect(missingFeatures({ "security.protocol": "SASL_SSL", "sasl.mechanisms": "GSSAPI", "compression.codec": "snappy" }, ["ssl", "sasl"])).toEqual(["sasl_gssapi", "snappy"]);
});
