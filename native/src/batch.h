// Columnar batch of consumed messages: one buffer for keys, one for values, typed arrays for the
// rest; a length of -1 is null (distinct from empty).
#pragma once

#include "common.h"

namespace cdc {

struct Batch {
  std::vector<std::string> topicNames;
  std::vector<uint16_t> topicIdx;
  std::vector<int32_t> partitions;
  std::vector<double> offsets, timestamps;
  std::vector<int32_t> keyLens, valueLens;
  std::vector<uint8_t> keys, values;
  std::vector<int32_t> headerIdx;  // message index per header entry
  std::vector<std::string> headerNames;
  std::vector<int32_t> headerLens;
  std::vector<uint8_t> headerValues;
  std::vector<ErrorEntry> messageErrors;
  std::vector<TopicPartition> errorPartitions;

  // Appends a message, or its error (partition EOF is not one); does not destroy it.
  void Add(const rd_kafka_message_t *m);
  // {count, topicNames, topicIdx, partitions, offsets, timestamps, keyLens, valueLens, keys,
  // values, headers?} and the message errors appended to `errors`.
  void ToJs(Napi::Env env, Napi::Object out, Napi::Array errors) const;

 private:
  uint16_t TopicIndex(const char *name);
};

}  // namespace cdc
