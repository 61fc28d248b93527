#include "common.h"

namespace cdc {

namespace {

constexpr size_t kMaxQueuedLogs = 1000;

void LogCb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  auto *h = static_cast<Handle *>(rd_kafka_opaque(rk));
  if (h) h->events.Log(level, fac, buf);
}

void ErrorCb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  auto *h = static_cast<Handle *>(opaque);
  if (!h) return;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
    h->events.Error(orig, buf, true);
  } else {
    h->events.Error(err, reason ? reason : "", false);
  }
}

int StatsCb(rd_kafka_t *, char *json, size_t len, void *opaque) {
  auto *h = static_cast<Handle *>(opaque);
  std::lock_guard<std::mutex> g(h->events.mu);
  h->events.stats.assign(json, len);
  h->events.hasStats = true;
  return 0;  // librdkafka frees json
}

class AsyncTask : public Napi::AsyncWorker {
 public:
  AsyncTask(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env), work_(std::move(work)), done_(std::move(done)), deferred_(Napi::Promise::Deferred::New(env)) {}
  ~AsyncTask() override {
    if (status_.error) rd_kafka_error_destroy(status_.error);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { work_(status_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (status_.error) {
      rd_kafka_error_t *e = status_.error;
      status_.error = nullptr;
      deferred_.Reject(KafkaErrorObj(env, e).Value());
    } else if (status_.err) {
      deferred_.Reject(KafkaError(env, status_.err, status_.message).Value());
    } else {
      try {
        deferred_.Resolve(done_ ? done_(env) : env.Undefined());
      } catch (const Napi::Error &e) {
        deferred_.Reject(e.Value());
      }
    }
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Work work_;
  Done done_;
  Status status_;
  Napi::Promise::Deferred deferred_;
};

}  // namespace

std::string ErrName(rd_kafka_resp_err_t err) { return std::string("ERR_") + rd_kafka_err2name(err); }

void EventSink::Log(int level, const char *fac, const char *buf) {
  std::lock_guard<std::mutex> g(mu);
  if (logs.size() >= kMaxQueuedLogs) {
    droppedLogs++;
    return;
  }
  logs.push_back({level, fac ? fac : "", buf ? buf : ""});
}

void EventSink::Error(int code, const std::string &msg, bool isFatal) {
  std::lock_guard<std::mutex> g(mu);
  if (errors.size() < kMaxQueuedLogs) errors.push_back({code, ErrName((rd_kafka_resp_err_t)code), msg, isFatal});
  if (isFatal) fatal = true;
}

size_t EventSink::RebalanceCount() {
  std::lock_guard<std::mutex> g(mu);
  return rebalances.size();
}

void Handle::Destroy() {
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

PartitionList JsToList(const Napi::Value &v) {
  Napi::Array arr = v.As<Napi::Array>();
  PartitionList l(rd_kafka_topic_partition_list_new((int)arr.Length()), rd_kafka_topic_partition_list_destroy);
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Object o = arr.Get(i).As<Napi::Object>();
    std::string topic = o.Get("topic").As<Napi::String>();
    int32_t partition = o.Get("partition").As<Napi::Number>().Int32Value();
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l.get(), topic.c_str(), partition);
    Napi::Value off = o.Get("offset");
    tp->offset = off.IsNumber() ? (int64_t)off.As<Napi::Number>().Int64Value() : RD_KAFKA_OFFSET_INVALID;
  }
  return l;
}

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
    if (v[i].err) o.Set("error", ErrName((rd_kafka_resp_err_t)v[i].err));
    arr[i] = o;
  }
  return arr;
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
  Napi::Object o = Napi::Object::New(env);
  o.Set("logs", jl);
  o.Set("droppedLogs", (double)dropped);
  o.Set("errors", je);
  o.Set("rebalances", jr);
  return o;
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

void CreateClient(Napi::Env env, Handle *h, rd_kafka_type_t type, rd_kafka_conf_t *conf) {
  char errstr[512];
  h->rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));  // owns conf on success
  if (!h->rk) {
    rd_kafka_conf_destroy(conf);
    throw KafkaError(env, RD_KAFKA_RESP_ERR__INVALID_ARG, errstr);
  }
}

Napi::Promise RunAsync(Napi::Env env, Work work, Done done) {
  auto *task = new AsyncTask(env, std::move(work), std::move(done));  // deletes itself when settled
  Napi::Promise p = task->Promise();
  task->Queue();
  return p;
}

Napi::Promise Resolved(Napi::Env env, Napi::Value v) {
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  d.Resolve(v);
  return d.Promise();
}

}  // namespace cdc
