// Shared by the addon's classes: the handle and what librdkafka's threads report into it (the
// event sink), JS <-> librdkafka conversions, errors, and the one async-work helper.
#pragma once

#include <napi.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace cdc {

// librdkafka's enum name, e.g. ERR__TRANSPORT, ERR_UNKNOWN_TOPIC_OR_PART.
std::string ErrName(rd_kafka_resp_err_t err);

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

  void Log(int level, const char *fac, const char *buf);
  void Error(int code, const std::string &msg, bool isFatal);
  size_t RebalanceCount();
};

// Owns an rd_kafka_t (and, for the mock cluster, the cluster). Shared with in-flight async work so
// that a finalizer never frees a handle in use.
struct Handle {
  rd_kafka_t *rk = nullptr;
  rd_kafka_queue_t *queue = nullptr;
  rd_kafka_mock_cluster_t *mock = nullptr;
  EventSink events;
  bool consumer = false;
  std::atomic<bool> closed{false};

  ~Handle() { Destroy(); }
  void Destroy();
};

// Per-environment registry of live handles, freed by the environment cleanup hook (addon.cc).
struct AddonData {
  std::mutex mu;
  std::set<std::shared_ptr<Handle> *> live;
};

// ---- conversions ----------------------------------------------------------------------------
using PartitionList = std::shared_ptr<rd_kafka_topic_partition_list_t>;
// [{topic, partition, offset?}] -> list (destroyed with its last reference).
PartitionList JsToList(const Napi::Value &v);
std::vector<TopicPartition> ListToVector(const rd_kafka_topic_partition_list_t *l);
Napi::Array PartitionsToJs(Napi::Env env, const std::vector<TopicPartition> &v);
// {logs, droppedLogs, errors, rebalances}, taken out of the handle's event sink.
Napi::Object DrainEvents(Napi::Env env, Handle *h);

// ---- errors ---------------------------------------------------------------------------------
// Error with code (librdkafka's name) and errno; `msg` empty: librdkafka's description.
Napi::Error KafkaError(Napi::Env env, rd_kafka_resp_err_t err, const std::string &msg = "");
// From an rd_kafka_error_t (which it destroys): also fatal and retriable.
Napi::Error KafkaErrorObj(Napi::Env env, rd_kafka_error_t *error);

// A conf from a {key: string} object with the handle's log, error and stats callbacks; throws
// with the offending property named.
rd_kafka_conf_t *BuildConf(Napi::Env env, Napi::Object props, Handle *h);
// rd_kafka_new, or throws (the conf is freed either way).
void CreateClient(Napi::Env env, Handle *h, rd_kafka_type_t type, rd_kafka_conf_t *conf);

// ---- the one async-work helper --------------------------------------------------------------
// Outcome of blocking work: an error code (with an optional message), or an error object.
struct Status {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string message;
  rd_kafka_error_t *error = nullptr;
};
using Work = std::function<void(Status &)>;
using Done = std::function<Napi::Value(Napi::Env)>;
// Runs `work` on the thread pool (never on the JS thread), then settles the returned promise on
// the JS thread: rejected with a KafkaError when the status says so, otherwise resolved with
// `done`'s value (undefined without one). Lambdas capture the shared handle to keep it alive.
Napi::Promise RunAsync(Napi::Env env, Work work, Done done = nullptr);
// An already resolved promise.
Napi::Promise Resolved(Napi::Env env, Napi::Value v);

// ---- wrapped classes ------------------------------------------------------------------------
// Base of the JS classes: owns a shared handle, registered so the cleanup hook frees leftovers.
template <typename T>
class Wrapped : public Napi::ObjectWrap<T> {
 public:
  explicit Wrapped(const Napi::CallbackInfo &info)
      : Napi::ObjectWrap<T>(info), data_(info.Env().GetInstanceData<AddonData>()), h_(std::make_shared<Handle>()) {
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
  static void Check(Napi::Env env, rd_kafka_resp_err_t err) {
    if (err) throw KafkaError(env, err);
  }
  AddonData *data_;
  std::shared_ptr<Handle> h_;
};

Napi::Function ConsumerClass(Napi::Env env);
Napi::Function ProducerClass(Napi::Env env);
Napi::Function MockClusterClass(Napi::Env env);

}  // namespace cdc
