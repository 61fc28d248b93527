// Thin N-API binding over librdkafka: a batch consumer, a producer and the mock cluster.
// Option checks, defaults and error classes live in the TypeScript wrapper (src/kafka/native.ts).
#include <napi.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr size_t kMaxQueuedLogs = 1000;

// librdkafka's enum name, e.g. ERR__TRANSPORT, ERR_UNKNOWN_TOPIC_OR_PART.
std::string ErrName(rd_kafka_resp_err_t err) { return std::string("ERR_") + rd_kafka_err2name(err); }

struct LogEntry {
  int level;
  std::string facility;
  std::string message;
};

struct ErrorEntry {
  int code;
  std::string name;
  std::string message;
  bool fatal;
};

struct TopicPartition {
  std::string topic;
  int32_t partition;
  int64_t offset;
  int err;
};

struct RebalanceEntry {
  bool assigned;
  std::vector<TopicPartition> partitions;
};

// Everything librdkafka's threads report, collected under a lock and drained by JS.
struct EventSink {
  std::mutex mu;
  std::vector<LogEntry> logs;
  size_t droppedLogs = 0;
  std::vector<ErrorEntry> errors;
  std::vector<RebalanceEntry> rebalances;
  std::string stats;
  bool hasStats = false;
  std::atomic<bool> fatal{false};
  // producer delivery reports
  uint64_t delivered = 0;
  std::vector<TopicPartition> deliveryErrors;

  void log(int level, const char *fac, const char *buf) {
    std::lock_guard<std::mutex> g(mu);
    if (logs.size() >= kMaxQueuedLogs) {
      droppedLogs++;
      return;
    }
    logs.push_back({level, fac ? fac : "", buf ? buf : ""});
  }
  void error(int code, const std::string &msg, bool isFatal) {
    std::lock_guard<std::mutex> g(mu);
    if (errors.size() < kMaxQueuedLogs) errors.push_back({code, ErrName((rd_kafka_resp_err_t)code), msg, isFatal});
    if (isFatal) fatal = true;
  }
};

std::vector<TopicPartition> ListToVector(const rd_kafka_topic_partition_list_t *l) {
  std::vector<TopicPartition> out;
  if (!l) return out;
  out.reserve(l->cnt);
  for (int i = 0; i < l->cnt; i++)
    out.push_back({l->elems[i].topic, l->elems[i].partition, l->elems[i].offset, (int)l->elems[i].err});
  return out;
}

Napi::Array PartitionsToJs(Napi::Env env, const std::vector<TopicPartition> &v) {
  Napi::Array arr = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("topic", v[i].topic);
    o.Set("partition", v[i].partition);
    o.Set("offset", (double)v[i].offset);
    if (v[i].err) o.Set("error", ErrName((rd_kafka_resp_err_t)v[i].err).c_str());
    arr[i] = o;
  }
  return arr;
}

// [{topic, partition, offset?}] -> list; caller destroys.
rd_kafka_topic_partition_list_t *JsToList(const Napi::Value &v) {
  Napi::Array arr = v.As<Napi::Array>();
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Object o = arr.Get(i).As<Napi::Object>();
    std::string topic = o.Get("topic").As<Napi::String>();
    int32_t partition = o.Get("partition").As<Napi::Number>().Int32Value();
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, topic.c_str(), partition);
    Napi::Value off = o.Get("offset");
    tp->offset = off.IsNumber() ? (int64_t)off.As<Napi::Number>().Int64Value() : RD_KAFKA_OFFSET_INVALID;
  }
  return l;
}

Napi::Error KafkaError(Napi::Env env, rd_kafka_resp_err_t err, const std::string &msg) {
  Napi::Error e = Napi::Error::New(env, msg.empty() ? rd_kafka_err2str(err) : msg);
  e.Set("code", ErrName(err));
  e.Set("errno", (double)err);
  return e;
}

Napi::Error KafkaErrorObj(Napi::Env env, rd_kafka_error_t *error) {
  Napi::Error e = Napi::Error::New(env, rd_kafka_error_string(error));
  e.Set("code", std::string("ERR_") + rd_kafka_error_name(error));
  e.Set("errno", (double)rd_kafka_error_code(error));
  e.Set("fatal", Napi::Boolean::New(env, rd_kafka_error_is_fatal(error)));
  e.Set("retriable", Napi::Boolean::New(env, rd_kafka_error_is_retriable(error)));
  rd_kafka_error_destroy(error);
  return e;
}

// Owns an rd_kafka_t. Shared with in-flight workers so a finalizer never frees a handle in use.
struct Handle {
  rd_kafka_t *rk = nullptr;
  rd_kafka_queue_t *queue = nullptr;
  rd_kafka_mock_cluster_t *mock = nullptr;
  EventSink events;
  bool consumer = false;
  std::atomic<bool> closed{false};

  ~Handle() { Destroy(); }
  void Destroy() {
    if (mock) {
      rd_kafka_mock_cluster_destroy(mock);
      mock = nullptr;
    }
    if (queue) {
      rd_kafka_queue_destroy(queue);
      queue = nullptr;
    }
    if (rk) {
      if (consumer) rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
      else rd_kafka_destroy(rk);
      rk = nullptr;
    }
  }
};

struct AddonData {
  std::mutex mu;
  std::set<std::shared_ptr<Handle> *> live;
};

void LogCb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  auto *h = static_cast<Handle *>(rd_kafka_opaque(rk));
  if (h) h->events.log(level, fac, buf);
}

void ErrorCb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  auto *h = static_cast<Handle *>(opaque);
  if (!h) return;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
    h->events.error(orig, buf, true);
  } else {
    h->events.error(err, reason ? reason : "", false);
  }
}

int StatsCb(rd_kafka_t *, char *json, size_t len, void *opaque) {
  auto *h = static_cast<Handle *>(opaque);
  std::lock_guard<std::mutex> g(h->events.mu);
  h->events.stats.assign(json, len);
  h->events.hasStats = true;
  return 0;
}

void RebalanceCb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque) {
  auto *h = static_cast<Handle *>(opaque);
  bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  bool assigned = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
  if (assigned) {
    if (cooperative) {
      rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
      if (e) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, parts);
    }
  } else {
    // Commit what JS marked as processed (offsets_store) while the generation is still valid,
    // so the next owner starts exactly after it.
    rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, nullptr, 0);
    if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
      h->events.error(cerr, std::string("commit on revoke failed: ") + rd_kafka_err2str(cerr), false);
    if (cooperative) {
      rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
      if (e) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }
  std::lock_guard<std::mutex> g(h->events.mu);
  h->events.rebalances.push_back({assigned, ListToVector(parts)});
}

void DrCb(rd_kafka_t *, const rd_kafka_message_t *m, void *opaque) {
  auto *h = static_cast<Handle *>(opaque);
  std::lock_guard<std::mutex> g(h->events.mu);
  if (m->err) {
    if (h->events.deliveryErrors.size() < 100000)
      h->events.deliveryErrors.push_back({rd_kafka_topic_name(m->rkt), m->partition, m->offset, (int)m->err});
  } else {
    h->events.delivered++;
  }
}

// Builds a conf from a {key: string} object; throws with the offending property named.
rd_kafka_conf_t *BuildConf(Napi::Env env, Napi::Object props, Handle *h) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char errstr[512];
  Napi::Array keys = props.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    std::string k = keys.Get(i).As<Napi::String>();
    std::string v = props.Get(k).ToString();
    rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr));
    if (r != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      Napi::Error e = Napi::Error::New(env, errstr);
      e.Set("code", r == RD_KAFKA_CONF_UNKNOWN ? "ERR__UNKNOWN_PROPERTY" : "ERR__INVALID_ARG");
      e.Set("property", k);
      throw e;
    }
  }
  rd_kafka_conf_set_opaque(conf, h);
  rd_kafka_conf_set_log_cb(conf, LogCb);
  rd_kafka_conf_set_error_cb(conf, ErrorCb);
  rd_kafka_conf_set_stats_cb(conf, StatsCb);
  return conf;
}

Napi::Object DrainEvents(Napi::Env env, Handle *h) {
  std::vector<LogEntry> logs;
  std::vector<ErrorEntry> errors;
  std::vector<RebalanceEntry> rebalances;
  size_t dropped;
  {
    std::lock_guard<std::mutex> g(h->events.mu);
    logs.swap(h->events.logs);
    errors.swap(h->events.errors);
    rebalances.swap(h->events.rebalances);
    dropped = h->events.droppedLogs;
    h->events.droppedLogs = 0;
  }
  Napi::Object o = Napi::Object::New(env);
  Napi::Array jl = Napi::Array::New(env, logs.size());
  for (size_t i = 0; i < logs.size(); i++) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("level", logs[i].level);
    e.Set("facility", logs[i].facility);
    e.Set("message", logs[i].message);
    jl[i] = e;
  }
  Napi::Array je = Napi::Array::New(env, errors.size());
  for (size_t i = 0; i < errors.size(); i++) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("code", errors[i].name);
    e.Set("errno", errors[i].code);
    e.Set("message", errors[i].message);
    e.Set("fatal", Napi::Boolean::New(env, errors[i].fatal));
    je[i] = e;
  }
  Napi::Array jr = Napi::Array::New(env, rebalances.size());
  for (size_t i = 0; i < rebalances.size(); i++) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("type", rebalances[i].assigned ? "assign" : "revoke");
    e.Set("partitions", PartitionsToJs(env, rebalances[i].partitions));
    jr[i] = e;
  }
  o.Set("logs", jl);
  o.Set("droppedLogs", (double)dropped);
  o.Set("errors", je);
  o.Set("rebalances", jr);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Columnar batch: one allocation for keys, one for values, typed arrays for the rest.
struct Batch {
  std::vector<std::string> topicNames;
  std::vector<uint16_t> topicIdx;
  std::vector<int32_t> partitions;
  std::vector<double> offsets, timestamps;
  std::vector<int32_t> keyLens, valueLens;  // -1 = null
  std::vector<uint8_t> keys, values;
  std::vector<int32_t> headerIdx;  // message index per header entry
  std::vector<std::string> headerNames;
  std::vector<int32_t> headerLens;
  std::vector<uint8_t> headerValues;
  std::vector<ErrorEntry> messageErrors;
  std::vector<TopicPartition> errorPartitions;

  uint16_t TopicIndex(const char *name) {
    for (size_t i = 0; i < topicNames.size(); i++)
      if (topicNames[i] == name) return (uint16_t)i;
    topicNames.emplace_back(name);
    return (uint16_t)(topicNames.size() - 1);
  }

  void Add(rd_kafka_message_t *m) {
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
    if (m->key) {
      keyLens.push_back((int32_t)m->key_len);
      keys.insert(keys.end(), (uint8_t *)m->key, (uint8_t *)m->key + m->key_len);
    } else {
      keyLens.push_back(-1);
    }
    if (m->payload) {
      valueLens.push_back((int32_t)m->len);
      values.insert(values.end(), (uint8_t *)m->payload, (uint8_t *)m->payload + m->len);
    } else {
      valueLens.push_back(-1);
    }
    rd_kafka_headers_t *hdrs = nullptr;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
      const char *name;
      const void *val;
      size_t size;
      for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
        headerIdx.push_back((int32_t)idx);
        headerNames.emplace_back(name);
        if (val) {
          headerLens.push_back((int32_t)size);
          headerValues.insert(headerValues.end(), (const uint8_t *)val, (const uint8_t *)val + size);
        } else {
          headerLens.push_back(-1);
        }
      }
    }
  }
};

template <typename T, typename A>
A ToTyped(Napi::Env env, const std::vector<T> &v) {
  A arr = A::New(env, v.size());
  if (!v.empty()) memcpy(arr.Data(), v.data(), v.size() * sizeof(T));
  return arr;
}

Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const std::vector<uint8_t> &v) {
  return Napi::Buffer<uint8_t>::Copy(env, v.data(), v.size());
}

class ConsumeWorker : public Napi::AsyncWorker {
 public:
  ConsumeWorker(Napi::Env env, std::shared_ptr<Handle> h, int max, int timeoutMs)
      : Napi::AsyncWorker(env), h_(std::move(h)), max_(max), timeout_(timeoutMs), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (h_->closed) {
      SetError("consumer is closed");
      return;
    }
    std::vector<rd_kafka_message_t *> msgs(max_);
    size_t rebalancesBefore;
    {
      std::lock_guard<std::mutex> g(h_->events.mu);
      rebalancesBefore = h_->events.rebalances.size();
    }
    // Wait for the first message only; then take whatever is already queued and return,
    // so a batcher never sits on a half-full batch while the queue is dry.
    rd_kafka_message_t *first = rd_kafka_consumer_poll(h_->rk, timeout_);
    if (!first) return;
    batch_.Add(first);
    rd_kafka_message_destroy(first);
    if (RebalanceHappened(rebalancesBefore)) return;
    int got = 1;
    while (got < max_) {
      ssize_t n = rd_kafka_consume_batch_queue(h_->queue, 0, msgs.data(), (size_t)(max_ - got));
      if (n <= 0) break;
      for (ssize_t i = 0; i < n; i++) {
        batch_.Add(msgs[i]);
        rd_kafka_message_destroy(msgs[i]);
      }
      got += (int)n;
      if (RebalanceHappened(rebalancesBefore)) break;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = DrainEvents(env, h_.get());
    Napi::Array topics = Napi::Array::New(env, batch_.topicNames.size());
    for (size_t i = 0; i < batch_.topicNames.size(); i++) topics[i] = batch_.topicNames[i];
    o.Set("count", (double)batch_.partitions.size());
    o.Set("topicNames", topics);
    o.Set("topicIdx", ToTyped<uint16_t, Napi::Uint16Array>(env, batch_.topicIdx));
    o.Set("partitions", ToTyped<int32_t, Napi::Int32Array>(env, batch_.partitions));
    o.Set("offsets", ToTyped<double, Napi::Float64Array>(env, batch_.offsets));
    o.Set("timestamps", ToTyped<double, Napi::Float64Array>(env, batch_.timestamps));
    o.Set("keyLens", ToTyped<int32_t, Napi::Int32Array>(env, batch_.keyLens));
    o.Set("valueLens", ToTyped<int32_t, Napi::Int32Array>(env, batch_.valueLens));
    o.Set("keys", ToBuffer(env, batch_.keys));
    o.Set("values", ToBuffer(env, batch_.values));
    if (!batch_.headerIdx.empty()) {
      Napi::Array names = Napi::Array::New(env, batch_.headerNames.size());
      for (size_t i = 0; i < batch_.headerNames.size(); i++) names[i] = batch_.headerNames[i];
      Napi::Object hd = Napi::Object::New(env);
      hd.Set("index", ToTyped<int32_t, Napi::Int32Array>(env, batch_.headerIdx));
      hd.Set("names", names);
      hd.Set("lens", ToTyped<int32_t, Napi::Int32Array>(env, batch_.headerLens));
      hd.Set("values", ToBuffer(env, batch_.headerValues));
      o.Set("headers", hd);
    }
    Napi::Array errs = o.Get("errors").As<Napi::Array>();
    for (size_t i = 0; i < batch_.messageErrors.size(); i++) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("code", batch_.messageErrors[i].name);
      e.Set("errno", batch_.messageErrors[i].code);
      e.Set("message", batch_.messageErrors[i].message);
      e.Set("fatal", Napi::Boolean::New(env, false));
      e.Set("topic", batch_.errorPartitions[i].topic);
      e.Set("partition", batch_.errorPartitions[i].partition);
      errs[errs.Length()] = e;
    }
    o.Set("fatal", Napi::Boolean::New(env, h_->events.fatal.load()));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  bool RebalanceHappened(size_t before) {
    std::lock_guard<std::mutex> g(h_->events.mu);
    return h_->events.rebalances.size() != before;
  }
  std::shared_ptr<Handle> h_;
  int max_, timeout_;
  Napi::Promise::Deferred deferred_;
  Batch batch_;
};

// Runs a blocking librdkafka call on the thread pool and resolves with its JS result.
class TaskWorker : public Napi::AsyncWorker {
 public:
  using Run = std::function<void(TaskWorker &)>;
  using Done = std::function<Napi::Value(Napi::Env, TaskWorker &)>;
  TaskWorker(Napi::Env env, std::shared_ptr<Handle> h, Run run, Done done)
      : Napi::AsyncWorker(env), h(std::move(h)), run_(std::move(run)), done_(std::move(done)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  ~TaskWorker() override {
    if (list) rd_kafka_topic_partition_list_destroy(list);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { run_(*this); }
  void OnOK() override {
    Napi::Env env = Env();
    if (err) {
      deferred_.Reject(KafkaError(env, err, errMessage).Value());
      return;
    }
    if (errorObj) {
      rd_kafka_error_t *e = errorObj;
      errorObj = nullptr;
      deferred_.Reject(KafkaErrorObj(env, e).Value());
      return;
    }
    deferred_.Resolve(done_ ? done_(env, *this) : env.Undefined());
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

  std::shared_ptr<Handle> h;
  rd_kafka_topic_partition_list_t *list = nullptr;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  rd_kafka_error_t *errorObj = nullptr;
  std::string errMessage;
  int64_t lo = 0, hi = 0;
  uint64_t count = 0;
  std::vector<TopicPartition> parts;

 private:
  Run run_;
  Done done_;
  Napi::Promise::Deferred deferred_;
};

AddonData *Data(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// Base for wrapped handles: registers with the addon so the cleanup hook frees leftovers.
template <typename T>
class Wrapped : public Napi::ObjectWrap<T> {
 public:
  Wrapped(const Napi::CallbackInfo &info) : Napi::ObjectWrap<T>(info), data_(Data(info.Env())) {
    h_ = std::make_shared<Handle>();
    std::lock_guard<std::mutex> g(data_->mu);
    data_->live.insert(&h_);
  }
  ~Wrapped() override {
    std::lock_guard<std::mutex> g(data_->mu);
    data_->live.erase(&h_);
  }

 protected:
  void CheckOpen(Napi::Env env) {
    if (!h_ || !h_->rk || h_->closed) throw KafkaError(env, RD_KAFKA_RESP_ERR__DESTROY, "handle is closed");
  }
  std::shared_ptr<Handle> h_;
  AddonData *data_;
};

class Consumer : public Wrapped<Consumer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Consumer",
                       {InstanceMethod("subscribe", &Consumer::Subscribe),
                        InstanceMethod("unsubscribe", &Consumer::Unsubscribe),
                        InstanceMethod("consume", &Consumer::Consume),
                        InstanceMethod("seek", &Consumer::Seek),
                        InstanceMethod("pause", &Consumer::Pause),
                        InstanceMethod("resume", &Consumer::Resume),
                        InstanceMethod("commit", &Consumer::Commit),
                        InstanceMethod("storeOffsets", &Consumer::StoreOffsets),
                        InstanceMethod("committed", &Consumer::Committed),
                        InstanceMethod("assignment", &Consumer::Assignment),
                        InstanceMethod("position", &Consumer::Position),
                        InstanceMethod("queryWatermarks", &Consumer::QueryWatermarks),
                        InstanceMethod("cachedWatermarks", &Consumer::CachedWatermarks),
                        InstanceMethod("listTopics", &Consumer::ListTopics),
                        InstanceMethod("stats", &Consumer::Stats),
                        InstanceMethod("events", &Consumer::Events),
                        InstanceMethod("memberId", &Consumer::MemberId),
                        InstanceMethod("close", &Consumer::Close)});
  }

  Consumer(const Napi::CallbackInfo &info) : Wrapped<Consumer>(info) {
    Napi::Env env = info.Env();
    rd_kafka_conf_t *conf = BuildConf(env, info[0].As<Napi::Object>(), h_.get());
    rd_kafka_conf_set_rebalance_cb(conf, RebalanceCb);
    char errstr[512];
    h_->consumer = true;
    h_->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!h_->rk) {
      rd_kafka_conf_destroy(conf);
      throw KafkaError(env, RD_KAFKA_RESP_ERR__INVALID_ARG, errstr);
    }
    rd_kafka_poll_set_consumer(h_->rk);
    h_->queue = rd_kafka_queue_get_consumer(h_->rk);
  }

 private:
  Napi::Value Subscribe(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    Napi::Array topics = info[0].As<Napi::Array>();
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)topics.Length());
    for (uint32_t i = 0; i < topics.Length(); i++)
      rd_kafka_topic_partition_list_add(l, topics.Get(i).As<Napi::String>().Utf8Value().c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(h_->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) throw KafkaError(info.Env(), err, "");
    return info.Env().Undefined();
  }
  Napi::Value Unsubscribe(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    rd_kafka_resp_err_t err = rd_kafka_unsubscribe(h_->rk);
    if (err) throw KafkaError(info.Env(), err, "");
    return info.Env().Undefined();
  }
  Napi::Value Consume(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    auto *w = new ConsumeWorker(info.Env(), h_, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  Napi::Value Seek(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int timeout = info[1].As<Napi::Number>().Int32Value();
    auto *w = new TaskWorker(
        info.Env(), h_,
        [timeout](TaskWorker &t) {
          t.errorObj = rd_kafka_seek_partitions(t.h->rk, t.list, timeout);
          if (!t.errorObj) t.parts = ListToVector(t.list);
        },
        [](Napi::Env env, TaskWorker &t) -> Napi::Value { return PartitionsToJs(env, t.parts); });
    w->list = JsToList(info[0]);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  Napi::Value PauseResume(const Napi::CallbackInfo &info, bool pause) {
    CheckOpen(info.Env());
    rd_kafka_topic_partition_list_t *l = JsToList(info[0]);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(h_->rk, l) : rd_kafka_resume_partitions(h_->rk, l);
    std::vector<TopicPartition> out = ListToVector(l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) throw KafkaError(info.Env(), err, "");
    return PartitionsToJs(info.Env(), out);
  }
  Napi::Value Pause(const Napi::CallbackInfo &info) { return PauseResume(info, true); }
  Napi::Value Resume(const Napi::CallbackInfo &info) { return PauseResume(info, false); }
  Napi::Value StoreOffsets(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    rd_kafka_topic_partition_list_t *l = JsToList(info[0]);
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(h_->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) throw KafkaError(info.Env(), err, "");
    return info.Env().Undefined();
  }
  // commit(list|null, async): null commits the stored offsets.
  Napi::Value Commit(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    bool async = info[1].ToBoolean();
    if (async) {
      rd_kafka_topic_partition_list_t *l = info[0].IsArray() ? JsToList(info[0]) : nullptr;
      rd_kafka_resp_err_t err = rd_kafka_commit(h_->rk, l, 1);
      if (l) rd_kafka_topic_partition_list_destroy(l);
      if (err) throw KafkaError(info.Env(), err, "");
      return info.Env().Undefined();
    }
    auto *w = new TaskWorker(
        info.Env(), h_, [](TaskWorker &t) { t.err = rd_kafka_commit(t.h->rk, t.list, 0); }, nullptr);
    if (info[0].IsArray()) w->list = JsToList(info[0]);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  Napi::Value Committed(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int timeout = info[1].As<Napi::Number>().Int32Value();
    auto *w = new TaskWorker(
        info.Env(), h_,
        [timeout](TaskWorker &t) {
          t.err = rd_kafka_committed(t.h->rk, t.list, timeout);
          t.parts = ListToVector(t.list);
        },
        [](Napi::Env env, TaskWorker &t) -> Napi::Value { return PartitionsToJs(env, t.parts); });
    w->list = JsToList(info[0]);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  Napi::Value Assignment(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    rd_kafka_topic_partition_list_t *l = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_assignment(h_->rk, &l);
    if (err) throw KafkaError(info.Env(), err, "");
    std::vector<TopicPartition> out = ListToVector(l);
    rd_kafka_topic_partition_list_destroy(l);
    return PartitionsToJs(info.Env(), out);
  }
  Napi::Value Position(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    rd_kafka_topic_partition_list_t *l = JsToList(info[0]);
    rd_kafka_resp_err_t err = rd_kafka_position(h_->rk, l);
    std::vector<TopicPartition> out = ListToVector(l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) throw KafkaError(info.Env(), err, "");
    return PartitionsToJs(info.Env(), out);
  }
  Napi::Value QueryWatermarks(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    std::string topic = info[0].As<Napi::String>();
    int32_t partition = info[1].As<Napi::Number>().Int32Value();
    int timeout = info[2].As<Napi::Number>().Int32Value();
    auto *w = new TaskWorker(
        info.Env(), h_,
        [topic, partition, timeout](TaskWorker &t) {
          t.err = rd_kafka_query_watermark_offsets(t.h->rk, topic.c_str(), partition, &t.lo, &t.hi, timeout);
        },
        [](Napi::Env env, TaskWorker &t) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("low", (double)t.lo);
          o.Set("high", (double)t.hi);
          return o;
        });
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  // Metadata for all topics: asks about none by name, so nothing gets auto-created.
  Napi::Value ListTopics(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int timeout = info[0].As<Napi::Number>().Int32Value();
    auto *w = new TaskWorker(
        info.Env(), h_,
        [timeout](TaskWorker &t) {
          const rd_kafka_metadata_t *md = nullptr;
          t.err = rd_kafka_metadata(t.h->rk, 1, nullptr, &md, timeout);
          if (t.err) return;
          for (int i = 0; i < md->topic_cnt; i++)
            t.parts.push_back({md->topics[i].topic, md->topics[i].partition_cnt, 0, (int)md->topics[i].err});
          rd_kafka_metadata_destroy(md);
        },
        [](Napi::Env env, TaskWorker &t) -> Napi::Value {
          Napi::Array arr = Napi::Array::New(env, t.parts.size());
          for (size_t i = 0; i < t.parts.size(); i++) {
            Napi::Object o = Napi::Object::New(env);
            o.Set("topic", t.parts[i].topic);
            o.Set("partitions", t.parts[i].partition);
            if (t.parts[i].err) o.Set("error", ErrName((rd_kafka_resp_err_t)t.parts[i].err));
            arr[i] = o;
          }
          return arr;
        });
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  Napi::Value CachedWatermarks(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int64_t lo = -1, hi = -1;
    std::string topic = info[0].As<Napi::String>();
    rd_kafka_resp_err_t err = rd_kafka_get_watermark_offsets(h_->rk, topic.c_str(), info[1].As<Napi::Number>().Int32Value(), &lo, &hi);
    if (err) throw KafkaError(info.Env(), err, "");
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("low", (double)lo);
    o.Set("high", (double)hi);
    return o;
  }
  Napi::Value Stats(const Napi::CallbackInfo &info) {
    std::lock_guard<std::mutex> g(h_->events.mu);
    if (!h_->events.hasStats) return info.Env().Null();
    return Napi::String::New(info.Env(), h_->events.stats);
  }
  Napi::Value Events(const Napi::CallbackInfo &info) {
    Napi::Object o = DrainEvents(info.Env(), h_.get());
    o.Set("fatal", Napi::Boolean::New(info.Env(), h_->events.fatal.load()));
    return o;
  }
  Napi::Value MemberId(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    char *id = rd_kafka_memberid(h_->rk);
    if (!id) return info.Env().Null();
    Napi::String s = Napi::String::New(info.Env(), id);
    rd_kafka_mem_free(h_->rk, id);
    return s;
  }
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (!h_->rk || h_->closed.exchange(true)) return Napi::Promise::Deferred::New(info.Env()).Promise();
    auto *w = new TaskWorker(
        info.Env(), h_,
        [](TaskWorker &t) {
          // Leaves the group (revoke callback runs here), then frees the handle.
          t.err = rd_kafka_consumer_close(t.h->rk);
          t.h->Destroy();
        },
        [](Napi::Env env, TaskWorker &t) -> Napi::Value { return DrainEvents(env, t.h.get()); });
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
};

class Producer : public Wrapped<Producer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Producer",
                       {InstanceMethod("produce", &Producer::Produce), InstanceMethod("flush", &Producer::Flush),
                        InstanceMethod("events", &Producer::Events), InstanceMethod("close", &Producer::Close)});
  }
  Producer(const Napi::CallbackInfo &info) : Wrapped<Producer>(info) {
    Napi::Env env = info.Env();
    rd_kafka_conf_t *conf = BuildConf(env, info[0].As<Napi::Object>(), h_.get());
    rd_kafka_conf_set_dr_msg_cb(conf, DrCb);
    char errstr[512];
    h_->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!h_->rk) {
      rd_kafka_conf_destroy(conf);
      throw KafkaError(env, RD_KAFKA_RESP_ERR__INVALID_ARG, errstr);
    }
  }

 private:
  // produce(topic, partitions Int32Array, keys Buffer, keyLens Int32Array, values Buffer, valueLens Int32Array,
  //         headers?: {index Int32Array, names string[], values Buffer, lens Int32Array})
  // Copies the data, then enqueues off the JS thread, waiting on a full queue instead of failing.
  Napi::Value Produce(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    struct Msgs {
      std::string topic;
      std::vector<int32_t> partitions, keyLens, valueLens, hIdx, hLens;
      std::vector<uint8_t> keys, values, hValues;
      std::vector<std::string> hNames;
    };
    auto m = std::make_shared<Msgs>();
    m->topic = info[0].As<Napi::String>();
    auto copyI32 = [](Napi::Value v, std::vector<int32_t> &out) {
      Napi::Int32Array a = v.As<Napi::Int32Array>();
      out.assign(a.Data(), a.Data() + a.ElementLength());
    };
    auto copyBuf = [](Napi::Value v, std::vector<uint8_t> &out) {
      Napi::Buffer<uint8_t> b = v.As<Napi::Buffer<uint8_t>>();
      out.assign(b.Data(), b.Data() + b.Length());
    };
    copyI32(info[1], m->partitions);
    copyBuf(info[2], m->keys);
    copyI32(info[3], m->keyLens);
    copyBuf(info[4], m->values);
    copyI32(info[5], m->valueLens);
    if (info.Length() > 6 && info[6].IsObject()) {
      Napi::Object h = info[6].As<Napi::Object>();
      copyI32(h.Get("index"), m->hIdx);
      copyI32(h.Get("lens"), m->hLens);
      copyBuf(h.Get("values"), m->hValues);
      Napi::Array names = h.Get("names").As<Napi::Array>();
      for (uint32_t i = 0; i < names.Length(); i++) m->hNames.push_back(names.Get(i).As<Napi::String>());
    }
    auto *w = new TaskWorker(
        info.Env(), h_,
        [m](TaskWorker &t) {
          size_t ko = 0, vo = 0, hi = 0, ho = 0;
          for (size_t i = 0; i < m->partitions.size(); i++) {
            const void *key = m->keyLens[i] < 0 ? nullptr : m->keys.data() + ko;
            size_t klen = m->keyLens[i] < 0 ? 0 : (size_t)m->keyLens[i];
            const void *val = m->valueLens[i] < 0 ? nullptr : m->values.data() + vo;
            size_t vlen = m->valueLens[i] < 0 ? 0 : (size_t)m->valueLens[i];
            ko += klen;
            vo += vlen;
            rd_kafka_headers_t *hdrs = nullptr;
            while (hi < m->hIdx.size() && (size_t)m->hIdx[hi] == i) {
              if (!hdrs) hdrs = rd_kafka_headers_new(4);
              int32_t hl = m->hLens[hi];
              rd_kafka_header_add(hdrs, m->hNames[hi].c_str(), -1, hl < 0 ? nullptr : m->hValues.data() + ho, hl < 0 ? 0 : hl);
              if (hl > 0) ho += hl;
              hi++;
            }
            for (;;) {
              rd_kafka_resp_err_t err = rd_kafka_producev(
                  t.h->rk, RD_KAFKA_V_TOPIC(m->topic.c_str()), RD_KAFKA_V_PARTITION(m->partitions[i]),
                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)val, vlen),
                  RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
              if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(t.h->rk, 10);
                continue;
              }
              if (err) {
                if (hdrs) rd_kafka_headers_destroy(hdrs);
                t.err = err;
                return;
              }
              break;
            }
            t.count++;
          }
          rd_kafka_poll(t.h->rk, 0);
        },
        [](Napi::Env env, TaskWorker &t) -> Napi::Value { return Napi::Number::New(env, (double)t.count); });
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  Napi::Value Flush(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int timeout = info[0].As<Napi::Number>().Int32Value();
    auto *w = new TaskWorker(
        info.Env(), h_, [timeout](TaskWorker &t) { t.err = rd_kafka_flush(t.h->rk, timeout); },
        [](Napi::Env env, TaskWorker &t) -> Napi::Value { return DeliveryReport(env, t.h.get()); });
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
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
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (!h_->rk || h_->closed.exchange(true)) return Napi::Promise::Deferred::New(info.Env()).Promise();
    int timeout = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 5000;
    auto *w = new TaskWorker(
        info.Env(), h_,
        [timeout](TaskWorker &t) {
          rd_kafka_flush(t.h->rk, timeout);
          t.h->Destroy();
        },
        [](Napi::Env env, TaskWorker &t) -> Napi::Value { return DeliveryReport(env, t.h.get()); });
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
};

class MockCluster : public Wrapped<MockCluster> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "MockCluster",
                       {InstanceMethod("bootstrapServers", &MockCluster::Bootstraps),
                        InstanceMethod("createTopic", &MockCluster::CreateTopic),
                        InstanceMethod("brokerDown", &MockCluster::BrokerDown),
                        InstanceMethod("brokerUp", &MockCluster::BrokerUp),
                        InstanceMethod("brokerRtt", &MockCluster::BrokerRtt),
                        InstanceMethod("pushRequestErrors", &MockCluster::PushRequestErrors),
                        InstanceMethod("clearRequestErrors", &MockCluster::ClearRequestErrors),
                        InstanceMethod("close", &MockCluster::Close)});
  }
  MockCluster(const Napi::CallbackInfo &info) : Wrapped<MockCluster>(info) {
    Napi::Env env = info.Env();
    int brokers = info[0].As<Napi::Number>().Int32Value();
    rd_kafka_conf_t *conf = BuildConf(env, info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env), h_.get());
    char errstr[512];
    h_->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!h_->rk) {
      rd_kafka_conf_destroy(conf);
      throw KafkaError(env, RD_KAFKA_RESP_ERR__INVALID_ARG, errstr);
    }
    h_->mock = rd_kafka_mock_cluster_new(h_->rk, brokers);
    if (!h_->mock) throw KafkaError(env, RD_KAFKA_RESP_ERR__FAIL, "failed to create mock cluster");
    mc_ = h_->mock;
  }

 private:
  void Check(Napi::Env env) {
    if (h_->closed || !h_->mock) throw KafkaError(env, RD_KAFKA_RESP_ERR__DESTROY, "mock cluster is closed");
  }
  Napi::Value Bootstraps(const Napi::CallbackInfo &info) {
    Check(info.Env());
    return Napi::String::New(info.Env(), rd_kafka_mock_cluster_bootstraps(mc_));
  }
  Napi::Value CreateTopic(const Napi::CallbackInfo &info) {
    Check(info.Env());
    std::string topic = info[0].As<Napi::String>();
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc_, topic.c_str(), info[1].As<Napi::Number>().Int32Value(),
                                                         info[2].As<Napi::Number>().Int32Value());
    if (err) throw KafkaError(info.Env(), err, "");
    return info.Env().Undefined();
  }
  Napi::Value BrokerDown(const Napi::CallbackInfo &info) {
    Check(info.Env());
    rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_down(mc_, info[0].As<Napi::Number>().Int32Value());
    if (err) throw KafkaError(info.Env(), err, "");
    return info.Env().Undefined();
  }
  Napi::Value BrokerUp(const Napi::CallbackInfo &info) {
    Check(info.Env());
    rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_up(mc_, info[0].As<Napi::Number>().Int32Value());
    if (err) throw KafkaError(info.Env(), err, "");
    return info.Env().Undefined();
  }
  Napi::Value BrokerRtt(const Napi::CallbackInfo &info) {
    Check(info.Env());
    rd_kafka_resp_err_t err =
        rd_kafka_mock_broker_set_rtt(mc_, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
    if (err) throw KafkaError(info.Env(), err, "");
    return info.Env().Undefined();
  }
  // pushRequestErrors(apiKey, [errorCode...])
  Napi::Value PushRequestErrors(const Napi::CallbackInfo &info) {
    Check(info.Env());
    Napi::Array arr = info[1].As<Napi::Array>();
    std::vector<rd_kafka_resp_err_t> errs;
    for (uint32_t i = 0; i < arr.Length(); i++) errs.push_back((rd_kafka_resp_err_t)arr.Get(i).As<Napi::Number>().Int32Value());
    rd_kafka_mock_push_request_errors_array(mc_, info[0].As<Napi::Number>().Int32Value(), errs.size(), errs.data());
    return info.Env().Undefined();
  }
  Napi::Value ClearRequestErrors(const Napi::CallbackInfo &info) {
    Check(info.Env());
    rd_kafka_mock_clear_request_errors(mc_, info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (!h_->closed.exchange(true)) h_->Destroy();
    return info.Env().Undefined();
  }
  rd_kafka_mock_cluster_t *mc_ = nullptr;
};

Napi::Value ErrorCodes(Napi::Env env) {
  const rd_kafka_err_desc *descs;
  size_t n;
  rd_kafka_get_err_descs(&descs, &n);
  Napi::Object o = Napi::Object::New(env);
  for (size_t i = 0; i < n; i++)
    if (descs[i].name) o.Set(descs[i].name, (double)descs[i].code);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Never freed: object finalizers may run after the environment's instance data is gone.
  auto *data = new AddonData();
  napi_set_instance_data(env, data, nullptr, nullptr);
  // Frees every handle JS did not close (worker threads, sockets, mock brokers) at environment teardown.
  napi_add_env_cleanup_hook(
      env,
      [](void *arg) {
        auto *d = static_cast<AddonData *>(arg);
        std::lock_guard<std::mutex> g(d->mu);
        for (auto *hp : d->live)
          if (*hp && !(*hp)->closed.exchange(true)) (*hp)->Destroy();
      },
      data);
  exports.Set("Consumer", Consumer::Init(env));
  exports.Set("Producer", Producer::Init(env));
  exports.Set("MockCluster", MockCluster::Init(env));
  exports.Set("version", Napi::String::New(env, rd_kafka_version_str()));
  exports.Set("errorCodes", ErrorCodes(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(cdc_kafka, Init)
