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
  std::vector<int32_t> headerIdx;  // message index per header entry
  std::vector<std::string> headerNames;
  std::vector<int32_t> headerLens;
  std::vector<ErrorEntry> messageErrors;
  std::vector<TopicPartition> errorPartitions;

  Batch() = default;
  Batch(const Batch &) = delete;
  Batch &operator=(const Batch &) = delete;
  ~Batch();

  // Takes the message (destroyed by Finish or the destructor); an error message is recorded and
  // destroyed at once (partition EOF is not an error).
  void Add(rd_kafka_message_t *m);
  // Key and value bytes of the messages added so far.
  size_t Bytes() const { return bytes_; }
  // Copies every held message once into exactly sized buffers and destroys the messages.
  void Finish();
  // {count, topicNames, topicIdx, partitions, offsets, timestamps, keyLens, valueLens, keys,
  // values, headers?} and the message errors appended to `errors`; the byte buffers are handed to
  // JS without another copy.
  void ToJs(Napi::Env env, Napi::Object out, Napi::Array errors);

 private:
  struct Owned {
    uint8_t *data = nullptr;
    size_t len = 0;
  };
  std::vector<rd_kafka_message_t *> held_;
  size_t bytes_ = 0;
  Owned keys_, values_, headerValues_;
  uint16_t TopicIndex(const char *name);
  static Napi::Buffer<uint8_t> Hand(Napi::Env env, Owned &b);
};

}  // namespace cdc
