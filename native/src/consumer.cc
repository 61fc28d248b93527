// The batch consumer: one consume() returns every message already queued (up to a maximum) as a
// columnar batch; every blocking librdkafka call runs off the JS thread.
#include <algorithm>
#include <cstring>

#include "batch.h"
#include "common.h"

namespace cdc {

namespace {

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
      h->events.Error(cerr, std::string("commit on revoke failed: ") + rd_kafka_err2str(cerr), false);
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

// Waits up to timeoutMs for the first message only; then takes whatever is already queued, up to
// max messages and about maxBytes of keys and values, and returns, so a batcher never sits on a
// half-full batch while the queue is dry and a few huge records are not all copied at once. Stops
// early at a rebalance, so JS sees it before messages of the new assignment.
void ConsumeInto(Handle *h, Batch &batch, int max, int timeoutMs, double maxBytes) {
  size_t rebalancesBefore = h->events.RebalanceCount();
  rd_kafka_message_t *first = rd_kafka_consumer_poll(h->rk, timeoutMs);
  if (!first) return;
  batch.Add(first);
  std::vector<rd_kafka_message_t *> msgs(max);
  for (int got = 1; got < max && (double)batch.Bytes() < maxBytes && h->events.RebalanceCount() == rebalancesBefore;) {
    // one at a time: the next message may be far larger than the ones before (a cost of ~1 µs
    // per message, off the JS thread; the apply path is 10x slower)
    size_t take = 1;
    ssize_t n = rd_kafka_consume_batch_queue(h->queue, 0, msgs.data(), take);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; i++) batch.Add(msgs[i]);
    got += (int)n;
  }
}

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

  explicit Consumer(const Napi::CallbackInfo &info) : Wrapped<Consumer>(info) {
    Napi::Env env = info.Env();
    rd_kafka_conf_t *conf = BuildConf(env, info[0].As<Napi::Object>(), h_.get());
    rd_kafka_conf_set_rebalance_cb(conf, RebalanceCb);
    h_->consumer = true;
    CreateClient(env, h_.get(), RD_KAFKA_CONSUMER, conf);
    rd_kafka_poll_set_consumer(h_->rk);
    h_->queue = rd_kafka_queue_get_consumer(h_->rk);
  }

 private:
  Napi::Value Subscribe(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    Napi::Array topics = info[0].As<Napi::Array>();
    PartitionList l(rd_kafka_topic_partition_list_new((int)topics.Length()), rd_kafka_topic_partition_list_destroy);
    for (uint32_t i = 0; i < topics.Length(); i++)
      rd_kafka_topic_partition_list_add(l.get(), topics.Get(i).As<Napi::String>().Utf8Value().c_str(), RD_KAFKA_PARTITION_UA);
    Check(info.Env(), rd_kafka_subscribe(h_->rk, l.get()));
    return info.Env().Undefined();
  }
  Napi::Value Unsubscribe(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    Check(info.Env(), rd_kafka_unsubscribe(h_->rk));
    return info.Env().Undefined();
  }
  // consume(max, timeoutMs, maxBytes?) -> the batch, with the events drained since the last call.
  Napi::Value Consume(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int max = info[0].As<Napi::Number>().Int32Value();
    int timeout = info[1].As<Napi::Number>().Int32Value();
    double maxBytes = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 1e18;
    auto h = h_;
    auto batch = std::make_shared<Batch>();
    return RunAsync(
        info.Env(),
        [h, batch, max, timeout, maxBytes](Status &s) {
          if (h->closed) {
            s.err = RD_KAFKA_RESP_ERR__DESTROY;
            s.message = "consumer is closed";
            return;
          }
          ConsumeInto(h.get(), *batch, max, timeout, maxBytes);
          batch->Finish();
        },
        [h, batch](Napi::Env env) -> Napi::Value {
          Napi::Object o = DrainEvents(env, h.get());
          batch->ToJs(env, o, o.Get("errors").As<Napi::Array>());
          o.Set("fatal", Napi::Boolean::New(env, h->events.fatal.load()));
          return o;
        });
  }
  // Runs a call on a partition list off the JS thread; resolves with the list as it came back.
  Napi::Value OnListAsync(Napi::Env env, PartitionList list,
                          std::function<void(rd_kafka_t *, rd_kafka_topic_partition_list_t *, Status &)> call) {
    auto h = h_;
    auto out = std::make_shared<std::vector<TopicPartition>>();
    return RunAsync(
        env,
        [h, list, out, call](Status &s) {
          call(h->rk, list.get(), s);
          if (!s.err && !s.error) *out = ListToVector(list.get());
        },
        [out](Napi::Env env) -> Napi::Value { return PartitionsToJs(env, *out); });
  }
  Napi::Value Seek(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int timeout = info[1].As<Napi::Number>().Int32Value();
    return OnListAsync(info.Env(), JsToList(info[0]), [timeout](rd_kafka_t *rk, rd_kafka_topic_partition_list_t *l, Status &s) {
      s.error = rd_kafka_seek_partitions(rk, l, timeout);
    });
  }
  Napi::Value Committed(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int timeout = info[1].As<Napi::Number>().Int32Value();
    return OnListAsync(info.Env(), JsToList(info[0]), [timeout](rd_kafka_t *rk, rd_kafka_topic_partition_list_t *l, Status &s) {
      s.err = rd_kafka_committed(rk, l, timeout);
    });
  }
  // Runs a non-blocking call on a partition list; returns the list as it came back.
  Napi::Value OnList(Napi::Env env, PartitionList l, rd_kafka_resp_err_t (*call)(rd_kafka_t *, rd_kafka_topic_partition_list_t *)) {
    CheckOpen(env);
    Check(env, call(h_->rk, l.get()));
    return PartitionsToJs(env, ListToVector(l.get()));
  }
  Napi::Value Pause(const Napi::CallbackInfo &info) { return OnList(info.Env(), JsToList(info[0]), rd_kafka_pause_partitions); }
  Napi::Value Resume(const Napi::CallbackInfo &info) { return OnList(info.Env(), JsToList(info[0]), rd_kafka_resume_partitions); }
  Napi::Value Position(const Napi::CallbackInfo &info) { return OnList(info.Env(), JsToList(info[0]), rd_kafka_position); }
  Napi::Value StoreOffsets(const Napi::CallbackInfo &info) {
    OnList(info.Env(), JsToList(info[0]), rd_kafka_offsets_store);
    return info.Env().Undefined();
  }
  // commit(list|null, async): null commits the stored offsets. Async: returns at once.
  Napi::Value Commit(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    PartitionList l = info[0].IsArray() ? JsToList(info[0]) : nullptr;
    if (info[1].ToBoolean()) {
      Check(info.Env(), rd_kafka_commit(h_->rk, l.get(), 1));
      return info.Env().Undefined();
    }
    auto h = h_;
    return RunAsync(info.Env(), [h, l](Status &s) { s.err = rd_kafka_commit(h->rk, l.get(), 0); });
  }
  Napi::Value Assignment(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    rd_kafka_topic_partition_list_t *raw = nullptr;
    Check(info.Env(), rd_kafka_assignment(h_->rk, &raw));
    PartitionList l(raw, rd_kafka_topic_partition_list_destroy);
    return PartitionsToJs(info.Env(), ListToVector(l.get()));
  }
  // queryWatermarks(topic, partition, timeoutMs) -> {low, high}, asking the broker.
  Napi::Value QueryWatermarks(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    std::string topic = info[0].As<Napi::String>();
    int32_t partition = info[1].As<Napi::Number>().Int32Value();
    int timeout = info[2].As<Napi::Number>().Int32Value();
    auto h = h_;
    auto marks = std::make_shared<std::pair<int64_t, int64_t>>(-1, -1);
    return RunAsync(
        info.Env(),
        [h, topic, partition, timeout, marks](Status &s) {
          s.err = rd_kafka_query_watermark_offsets(h->rk, topic.c_str(), partition, &marks->first, &marks->second, timeout);
        },
        [marks](Napi::Env env) -> Napi::Value { return Watermarks(env, marks->first, marks->second); });
  }
  // The watermarks last seen in fetch responses, without asking the broker.
  Napi::Value CachedWatermarks(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int64_t lo = -1, hi = -1;
    std::string topic = info[0].As<Napi::String>();
    Check(info.Env(), rd_kafka_get_watermark_offsets(h_->rk, topic.c_str(), info[1].As<Napi::Number>().Int32Value(), &lo, &hi));
    return Watermarks(info.Env(), lo, hi);
  }
  static Napi::Object Watermarks(Napi::Env env, int64_t lo, int64_t hi) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("low", (double)lo);
    o.Set("high", (double)hi);
    return o;
  }
  // Metadata for all topics: asks about none by name, so nothing gets auto-created.
  Napi::Value ListTopics(const Napi::CallbackInfo &info) {
    CheckOpen(info.Env());
    int timeout = info[0].As<Napi::Number>().Int32Value();
    auto h = h_;
    auto topics = std::make_shared<std::vector<TopicPartition>>();  // partition = partition count
    return RunAsync(
        info.Env(),
        [h, timeout, topics](Status &s) {
          const rd_kafka_metadata_t *md = nullptr;
          s.err = rd_kafka_metadata(h->rk, 1, nullptr, &md, timeout);
          if (s.err) return;
          for (int i = 0; i < md->topic_cnt; i++)
            topics->push_back({md->topics[i].topic, md->topics[i].partition_cnt, 0, (int)md->topics[i].err});
          rd_kafka_metadata_destroy(md);
        },
        [topics](Napi::Env env) -> Napi::Value {
          Napi::Array arr = Napi::Array::New(env, topics->size());
          for (size_t i = 0; i < topics->size(); i++) {
            const TopicPartition &t = (*topics)[i];
            Napi::Object o = Napi::Object::New(env);
            o.Set("topic", t.topic);
            o.Set("partitions", t.partition);
            if (t.err) o.Set("error", ErrName((rd_kafka_resp_err_t)t.err));
            arr[i] = o;
          }
          return arr;
        });
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
  // Leaves the group (the revoke callback commits the stored offsets), then frees the handle;
  // resolves with the last events. A second call resolves with undefined.
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (!h_->rk || h_->closed.exchange(true)) return Resolved(info.Env(), info.Env().Undefined());
    auto h = h_;
    return RunAsync(
        info.Env(),
        [h](Status &s) {
          s.err = rd_kafka_consumer_close(h->rk);
          h->Destroy();
        },
        [h](Napi::Env env) -> Napi::Value { return DrainEvents(env, h.get()); });
  }
};

}  // namespace

Napi::Function ConsumerClass(Napi::Env env) { return Consumer::Init(env); }

}  // namespace cdc
