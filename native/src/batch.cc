#include "batch.h"

#include <cstdlib>
#include <cstring>

namespace cdc {

namespace {

template <typename T, typename A>
A ToTyped(Napi::Env env, const std::vector<T> &v) {
  A arr = A::New(env, v.size());
  if (!v.empty()) memcpy(arr.Data(), v.data(), v.size() * sizeof(T));
  return arr;
}

Napi::Array Strings(Napi::Env env, const std::vector<std::string> &v) {
  Napi::Array arr = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) arr[i] = v[i];
  return arr;
}

uint8_t *Alloc(size_t len) {
  if (!len) return nullptr;
  auto *p = static_cast<uint8_t *>(malloc(len));
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

Batch::~Batch() {
  for (auto *m : held_) rd_kafka_message_destroy(m);
  free(keys_.data);
  free(values_.data);
  free(headerValues_.data);
}

uint16_t Batch::TopicIndex(const char *name) {
  for (size_t i = 0; i < topicNames.size(); i++)
    if (topicNames[i] == name) return (uint16_t)i;
  topicNames.emplace_back(name);
  return (uint16_t)(topicNames.size() - 1);
}

void Batch::Add(rd_kafka_message_t *m) {
  if (m->err) {
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      messageErrors.push_back({(int)m->err, ErrName(m->err), rd_kafka_message_errstr(m), false});
      errorPartitions.push_back({m->rkt ? rd_kafka_topic_name(m->rkt) : "", m->partition, m->offset, (int)m->err});
    }
    rd_kafka_message_destroy(m);
    return;
  }
  held_.push_back(m);
  bytes_ += (m->key ? m->key_len : 0) + (m->payload ? m->len : 0);
}

void Batch::Finish() {
  size_t keyBytes = 0, valueBytes = 0, headerBytes = 0;
  for (auto *m : held_) {
    if (m->key) keyBytes += m->key_len;
    if (m->payload) valueBytes += m->len;
    rd_kafka_headers_t *hdrs = nullptr;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
      const char *name;
      const void *val;
      size_t size;
      for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
        if (val) headerBytes += size;
    }
  }
  keys_ = {Alloc(keyBytes), 0};
  values_ = {Alloc(valueBytes), 0};
  headerValues_ = {Alloc(headerBytes), 0};
  size_t n = held_.size();
  topicIdx.reserve(n);
  partitions.reserve(n);
  offsets.reserve(n);
  timestamps.reserve(n);
  keyLens.reserve(n);
  valueLens.reserve(n);
  for (size_t idx = 0; idx < n; idx++) {
    rd_kafka_message_t *m = held_[idx];
    topicIdx.push_back(TopicIndex(rd_kafka_topic_name(m->rkt)));
    partitions.push_back(m->partition);
    offsets.push_back((double)m->offset);
    rd_kafka_timestamp_type_t tstype;
    timestamps.push_back((double)rd_kafka_message_timestamp(m, &tstype));
    keyLens.push_back(m->key ? (int32_t)m->key_len : -1);
    if (m->key && m->key_len) memcpy(keys_.data + keys_.len, m->key, m->key_len), keys_.len += m->key_len;
    valueLens.push_back(m->payload ? (int32_t)m->len : -1);
    if (m->payload && m->len) memcpy(values_.data + values_.len, m->payload, m->len), values_.len += m->len;
    rd_kafka_headers_t *hdrs = nullptr;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
      const char *name;
      const void *val;
      size_t size;
      for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
        headerIdx.push_back((int32_t)idx);
        headerNames.emplace_back(name);
        headerLens.push_back(val ? (int32_t)size : -1);
        if (val && size) memcpy(headerValues_.data + headerValues_.len, val, size), headerValues_.len += size;
      }
    }
    rd_kafka_message_destroy(m);
    held_[idx] = nullptr;
  }
  held_.clear();
}

Napi::Buffer<uint8_t> Batch::Hand(Napi::Env env, Owned &b) {
  if (!b.data) return Napi::Buffer<uint8_t>::New(env, 0);
  auto buf = Napi::Buffer<uint8_t>::New(env, b.data, b.len, [](Napi::Env, uint8_t *p) { free(p); });
  b = {};
  return buf;
}

void Batch::ToJs(Napi::Env env, Napi::Object o, Napi::Array errors) {
  o.Set("count", (double)partitions.size());
  o.Set("topicNames", Strings(env, topicNames));
  o.Set("topicIdx", ToTyped<uint16_t, Napi::Uint16Array>(env, topicIdx));
  o.Set("partitions", ToTyped<int32_t, Napi::Int32Array>(env, partitions));
  o.Set("offsets", ToTyped<double, Napi::Float64Array>(env, offsets));
  o.Set("timestamps", ToTyped<double, Napi::Float64Array>(env, timestamps));
  o.Set("keyLens", ToTyped<int32_t, Napi::Int32Array>(env, keyLens));
  o.Set("valueLens", ToTyped<int32_t, Napi::Int32Array>(env, valueLens));
  o.Set("keys", Hand(env, keys_));
  o.Set("values", Hand(env, values_));
  if (!headerIdx.empty()) {
    Napi::Object hd = Napi::Object::New(env);
    hd.Set("index", ToTyped<int32_t, Napi::Int32Array>(env, headerIdx));
    hd.Set("names", Strings(env, headerNames));
    hd.Set("lens", ToTyped<int32_t, Napi::Int32Array>(env, headerLens));
    hd.Set("values", Hand(env, headerValues_));
    o.Set("headers", hd);
  }
  for (size_t i = 0; i < messageErrors.size(); i++) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("code", messageErrors[i].name);
    e.Set("errno", messageErrors[i].code);
    e.Set("message", messageErrors[i].message);
    e.Set("fatal", Napi::Boolean::New(env, false));
    e.Set("topic", errorPartitions[i].topic);
    e.Set("partition", errorPartitions[i].partition);
    errors[errors.Length()] = e;
  }
}

}  // namespace cdc
