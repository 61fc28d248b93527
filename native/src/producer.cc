// The producer: columnar produce (one call enqueues a whole batch off the JS thread), flush, and
// delivery reports counted in the event sink.
#include "common.h"

namespace cdc {

namespace {

void DeliveryCb(rd_kafka_t *, const rd_kafka_message_t *m, void *opaque) {
  auto *h = static_cast<Handle *>(opaque);
  std::lock_guard<std::mutex> g(h->events.mu);
  if (m->err) {
    if (h->events.deliveryErrors.size() < 100000)
      h->events.deliveryErrors.push_back({rd_kafka_topic_name(m->rkt), m->partition, m->offset, (int)m->err});
  } else {
    h->events.delivered++;
  }
}

// A copy of produce()'s arguments, owned by the async work.
struct Messages {
  std::string topic;
  std::vector<int32_t> partitions, keyLens, valueLens, hIdx, hLens;
  std::vector<uint8_t> keys, values, hValues;
  std::vector<std::string> hNames;
};

void CopyI32(Napi::Value v, std::vector<int32_t> &out) {
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  out.assign(a.Data(), a.Data() + a.ElementLength());
}
void CopyBuf(Napi::Value v, std::vector<uint8_t> &out) {
  Napi::Buffer<uint8_t> b = v.As<Napi::Buffer<uint8_t>>();
  out.assign(b.Data(), b.Data() + b.Length());
}

// Enqueues every message, waiting (and serving delivery reports) while the queue is full.
// Returns how many were enqueued; stops at the first other error.
uint64_t Enqueue(rd_kafka_t *rk, const Messages &m, Status &s) {
  size_t ko = 0, vo = 0, hi = 0, ho = 0;
  uint64_t count = 0;
  for (size_t i = 0; i < m.partitions.size(); i++) {
    const void *key = m.keyLens[i] < 0 ? nullptr : m.keys.data() + ko;
    size_t klen = m.keyLens[i] < 0 ? 0 : (size_t)m.keyLens[i];
    const void *val = m.valueLens[i] < 0 ? nullptr : m.values.data() + vo;
    size_t vlen = m.valueLens[i] < 0 ? 0 : (size_t)m.valueLens[i];
    ko += klen;
    vo += vlen;
    rd_kafka_headers_t *hdrs = nullptr;
    for (; hi < m.hIdx.size() && (size_t)m.hIdx[hi] == i; hi++) {
      if (!hdrs) hdrs = rd_kafka_headers_new(4);
      int32_t hl = m.hLens[hi];
      rd_kafka_header_add(hdrs, m.hNames[hi].c_str(), -1, hl < 0 ? nullptr : m.hValues.data() + ho, hl < 0 ? 0 : hl);
      if (hl > 0) ho += hl;
    }
    for (;;) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(m.topic.c_str()), RD_KAFKA_V_PARTITION(m.partitions[i]), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk, 10);
        continue;
      }
      if (err) {
        if (hdrs) rd_kafka_headers_destroy(hdrs);  // owned by the message only on success
        s.err = err;
        return count;
      }
      break;
    }
    count++;
  }
  rd_kafka_poll(rk, 0);
  return count;
}

class Producer : public Wrapped<Producer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Producer",
                       {InstanceMethod("produce", &Producer::Produce), InstanceMethod("flush", &Producer::Flush),
                        InstanceMethod("events", &Producer::Events), InstanceMethod("close", &Producer::Close)});
  }
  explicit Producer(const Napi::CallbackInfo &info) : Wrapped<Producer>(info) {
    Napi::Env env = info.Env();
    rd_kafka_conf_t *conf = BuildConf(env, info[0].As<Napi::Object>(), h_.get());
    rd_kafka_conf_set_dr_msg_cb(conf, DeliveryCb);
    CreateClient(env, h_.get(), RD_KAFKA_PRODUCER, conf);
  }

 private:
  // produce(topic, partitions Int32Array, keys Buffer, keyLens Int32Array, values Buffer, valueLens Int32Array,
  //         headers?: {index Int32Array, names string[], values Buffer, lens Int32Array}) -> enqueued count
  // Copies the data, then enqueues off the JS thread, waiting on a full queue instead of failing.
  Napi::Value Produce(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    auto m = std::make_shared<Messages>();
    m->topic = info[0].As<Napi::String>();
    CopyI32(info[1], m->partitions);
    CopyBuf(info[2], m->keys);
    CopyI32(info[3], m->keyLens);
    CopyBuf(info[4], m->values);
    CopyI32(info[5], m->valueLens);
    if (info.Length() > 6 && info[6].IsObject()) {
      Napi::Object h = info[6].As<Napi::Object>();
      CopyI32(h.Get("index"), m->hIdx);
      CopyI32(h.Get("lens"), m->hLens);
      CopyBuf(h.Get("values"), m->hValues);
      Napi::Array names = h.Get("names").As<Napi::Array>();
      for (uint32_t i = 0; i < names.Length(); i++) m->hNames.push_back(names.Get(i).As<Napi::String>());
    }
    auto h = h_;
    auto count = std::make_shared<uint64_t>(0);
    return RunAsync(
        info.Env(), [h, m, count](Status &s) { *count = Enqueue(h->rk, *m, s); },
        [count](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, (double)*count); });
  }
  // flush(timeoutMs) -> the delivery report since the last one.
  Napi::Value Flush(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int timeout = info[0].As<Napi::Number>().Int32Value();
    auto h = h_;
    return RunAsync(
        info.Env(), [h, timeout](Status &s) { s.err = rd_kafka_flush(h->rk, timeout); },
        [h](Napi::Env env) -> Napi::Value { return DeliveryReport(env, h.get()); });
  }
  static Napi::Object DeliveryReport(Napi::Env env, Handle *h) {
    uint64_t delivered;
    std::vector<TopicPartition> errs;
    {
      std::lock_guard<std::mutex> g(h->events.mu);
      delivered = h->events.delivered;
      h->events.delivered = 0;
      errs.swap(h->events.deliveryErrors);
    }
    Napi::Object o = DrainEvents(env, h);
    o.Set("delivered", (double)delivered);
    o.Set("failed", PartitionsToJs(env, errs));
    return o;
  }
  Napi::Value Events(const Napi::CallbackInfo &info) {
    if (h_->rk && !h_->closed) rd_kafka_poll(h_->rk, 0);
    return DeliveryReport(info.Env(), h_.get());
  }
  // close(timeoutMs): flushes for up to timeoutMs, frees the handle, resolves with the last report.
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (!h_->rk || h_->closed.exchange(true)) return Resolved(info.Env(), info.Env().Undefined());
    int timeout = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 5000;
    auto h = h_;
    return RunAsync(
        info.Env(),
        [h, timeout](Status &) {
          rd_kafka_flush(h->rk, timeout);
          h->Destroy();
        },
        [h](Napi::Env env) -> Napi::Value { return DeliveryReport(env, h.get()); });
  }
};

}  // namespace

Napi::Function ProducerClass(Napi::Env env) { return Producer::Init(env); }

}  // namespace cdc
