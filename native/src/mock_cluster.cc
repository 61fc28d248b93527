// librdkafka's in-process mock cluster (rdkafka_mock.h), for tests and benchmarks: brokers on
// 127.0.0.1, topic creation and fault injection.
#include "common.h"

namespace cdc {

namespace {

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
  // MockCluster(brokers, props?): the cluster lives in a producer handle of its own.
  explicit MockCluster(const Napi::CallbackInfo &info) : Wrapped<MockCluster>(info) {
    Napi::Env env = info.Env();
    int brokers = info[0].As<Napi::Number>().Int32Value();
    rd_kafka_conf_t *conf = BuildConf(env, info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env), h_.get());
    CreateClient(env, h_.get(), RD_KAFKA_PRODUCER, conf);
    h_->mock = rd_kafka_mock_cluster_new(h_->rk, brokers);
    if (!h_->mock) throw KafkaError(env, RD_KAFKA_RESP_ERR__FAIL, "failed to create mock cluster");
  }

 private:
  rd_kafka_mock_cluster_t *Mock(Napi::Env env) {
    if (h_->closed || !h_->mock) throw KafkaError(env, RD_KAFKA_RESP_ERR__DESTROY, "mock cluster is closed");
    return h_->mock;
  }
  static int32_t Int(const Napi::CallbackInfo &info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

  Napi::Value Bootstraps(const Napi::CallbackInfo &info) {
    return Napi::String::New(info.Env(), rd_kafka_mock_cluster_bootstraps(Mock(info.Env())));
  }
  // createTopic(topic, partitions, replicationFactor)
  Napi::Value CreateTopic(const Napi::CallbackInfo &info) {
    rd_kafka_mock_cluster_t *mc = Mock(info.Env());
    std::string topic = info[0].As<Napi::String>();
    Check(info.Env(), rd_kafka_mock_topic_create(mc, topic.c_str(), Int(info, 1), Int(info, 2)));
    return info.Env().Undefined();
  }
  Napi::Value BrokerDown(const Napi::CallbackInfo &info) {
    Check(info.Env(), rd_kafka_mock_broker_set_down(Mock(info.Env()), Int(info, 0)));
    return info.Env().Undefined();
  }
  Napi::Value BrokerUp(const Napi::CallbackInfo &info) {
    Check(info.Env(), rd_kafka_mock_broker_set_up(Mock(info.Env()), Int(info, 0)));
    return info.Env().Undefined();
  }
  // brokerRtt(brokerId, ms)
  Napi::Value BrokerRtt(const Napi::CallbackInfo &info) {
    Check(info.Env(), rd_kafka_mock_broker_set_rtt(Mock(info.Env()), Int(info, 0), Int(info, 1)));
    return info.Env().Undefined();
  }
  // pushRequestErrors(apiKey, [errorCode...]): the next requests of that API fail, in order.
  Napi::Value PushRequestErrors(const Napi::CallbackInfo &info) {
    rd_kafka_mock_cluster_t *mc = Mock(info.Env());
    Napi::Array arr = info[1].As<Napi::Array>();
    std::vector<rd_kafka_resp_err_t> errs;
    for (uint32_t i = 0; i < arr.Length(); i++) errs.push_back((rd_kafka_resp_err_t)arr.Get(i).As<Napi::Number>().Int32Value());
    rd_kafka_mock_push_request_errors_array(mc, Int(info, 0), errs.size(), errs.data());
    return info.Env().Undefined();
  }
  Napi::Value ClearRequestErrors(const Napi::CallbackInfo &info) {
    rd_kafka_mock_clear_request_errors(Mock(info.Env()), Int(info, 0));
    return info.Env().Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (!h_->closed.exchange(true)) h_->Destroy();
    return info.Env().Undefined();
  }
};

}  // namespace

Napi::Function MockClusterClass(Napi::Env env) { return MockCluster::Init(env); }

}  // namespace cdc
