#include "batch.h"

#include <cstring>

namespace cdc {

namespace {

template <typename T, typename A>
A ToTyped(Napi::Env env, const std::vector<T> &v) {
  A arr = A::New(env, v.size());
  if (!v.empty()) memcpy(arr.Data(), v.data(), v.size() * sizeof(T));
  return arr;
}

Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const std::vector<uint8_t> &v) {
  return Napi::Buffer<uint8_t>::Copy(env, v.data(), v.size());
}

Napi::Array Strings(Napi::Env env, const std::vector<std::string> &v) {
  Napi::Array arr = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) arr[i] = v[i];
  return arr;
}

void Append(std::vector<uint8_t> &to, const void *data, size_t len) {
  to.insert(to.end(), (const uint8_t *)data, (const uint8_t *)data + len);
}

}  // namespace

uint16_t Batch::TopicIndex(const char *name) {
  for (size_t i = 0; i < topicNames.size(); i++)
    if (topicNames[i] == name) return (uint16_t)i;
  topicNames.emplace_back(name);
  return (uint16_t)(topicNames.size() - 1);
}

void Batch::Add(const rd_kafka_message_t *m) {
  if (m->err) {
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      messageErrors.push_back({(int)m->err, ErrName(m->err), rd_kafka_message_errstr(m), false});
      errorPartitions.push_back({m->rkt ? rd_kafka_topic_name(m->rkt) : "", m->partition, m->offset, (int)m->err});
    }
    return;
  }
  size_t idx = partitions.size();
  topicIdx.push_back(TopicIndex(rd_kafka_topic_name(m->rkt)));
  partitions.push_back(m->partition);
  offsets.push_back((double)m->offset);
  rd_kafka_timestamp_type_t tstype;
  timestamps.push_back((double)rd_kafka_message_timestamp(m, &tstype));
  keyLens.push_back(m->key ? (int32_t)m->key_len : -1);
  if (m->key) Append(keys, m->key, m->key_len);
  valueLens.push_back(m->payload ? (int32_t)m->len : -1);
  if (m->payload) Append(values, m->payload, m->len);
  rd_kafka_headers_t *hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
    const char *name;
    const void *val;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
      headerIdx.push_back((int32_t)idx);
      headerNames.emplace_back(name);
      headerLens.push_back(val ? (int32_t)size : -1);
      if (val) Append(headerValues, val, size);
    }
  }
}

void Batch::ToJs(Napi::Env env, Napi::Object o, Napi::Array errors) const {
  o.Set("count", (double)partitions.size());
  o.Set("topicNames", Strings(env, topicNames));
  o.Set("topicIdx", ToTyped<uint16_t, Napi::Uint16Array>(env, topicIdx));
  o.Set("partitions", ToTyped<int32_t, Napi::Int32Array>(env, partitions));
  o.Set("offsets", ToTyped<double, Napi::Float64Array>(env, offsets));
  o.Set("timestamps", ToTyped<double, Napi::Float64Array>(env, timestamps));
  o.Set("keyLens", ToTyped<int32_t, Napi::Int32Array>(env, keyLens));
  o.Set("valueLens", ToTyped<int32_t, Napi::Int32Array>(env, valueLens));
  o.Set("keys", ToBuffer(env, keys));
  o.Set("values", ToBuffer(env, values));
  if (!headerIdx.empty()) {
    Napi::Object hd = Napi::Object::New(env);
    hd.Set("index", ToTyped<int32_t, Napi::Int32Array>(env, headerIdx));
    hd.Set("names", Strings(env, headerNames));
    hd.Set("lens", ToTyped<int32_t, Napi::Int32Array>(env, headerLens));
    hd.Set("values", ToBuffer(env, headerValues));
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
