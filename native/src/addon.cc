// Thin N-API binding over librdkafka (linked statically): a batch consumer (consumer.cc), a
// producer (producer.cc) and the mock cluster (mock_cluster.cc). Option checks, defaults and error
// classes live in the TypeScript wrapper (src/kafka/). This file registers the module.
#include "common.h"

namespace cdc {

namespace {

Napi::Value ErrorCodes(Napi::Env env) {
  const rd_kafka_err_desc *descs;
  size_t n;
  rd_kafka_get_err_descs(&descs, &n);
  Napi::Object o = Napi::Object::New(env);
  for (size_t i = 0; i < n; i++)
    if (descs[i].name) o.Set(descs[i].name, (double)descs[i].code);
  return o;
}

// The library's "builtin.features", e.g. gzip,snappy,ssl,sasl,regex,lz4,sasl_gssapi,...
Napi::Value Features(Napi::Env env) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char buf[1024];
  size_t size = sizeof(buf);
  rd_kafka_conf_res_t r = rd_kafka_conf_get(conf, "builtin.features", buf, &size);
  rd_kafka_conf_destroy(conf);
  return Napi::String::New(env, r == RD_KAFKA_CONF_OK ? buf : "");
}

// checkProperties({k: v}) -> [{property, error, unknown}]: every property librdkafka refuses, set on a
// scratch config that is freed at once (no client, no thread, no network).
Napi::Value CheckProperties(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object props = info[0].As<Napi::Object>();
  Napi::Array keys = props.GetPropertyNames();
  Napi::Array out = Napi::Array::New(env);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char errstr[512];
  for (uint32_t i = 0; i < keys.Length(); i++) {
    std::string k = keys.Get(i).As<Napi::String>();
    std::string v = props.Get(k).ToString();
    rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr));
    if (r == RD_KAFKA_CONF_OK) continue;
    Napi::Object e = Napi::Object::New(env);
    e.Set("property", k);
    e.Set("error", std::string(errstr));
    e.Set("unknown", Napi::Boolean::New(env, r == RD_KAFKA_CONF_UNKNOWN));
    out.Set(out.Length(), e);
  }
  rd_kafka_conf_destroy(conf);
  return out;
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
  exports.Set("Consumer", ConsumerClass(env));
  exports.Set("Producer", ProducerClass(env));
  exports.Set("MockCluster", MockClusterClass(env));
  exports.Set("version", Napi::String::New(env, rd_kafka_version_str()));
  exports.Set("features", Features(env));
  exports.Set("errorCodes", ErrorCodes(env));
  exports.Set("checkProperties", Napi::Function::New(env, CheckProperties));
  return exports;
}

}  // namespace

}  // namespace cdc

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return cdc::Init(env, exports); }

NODE_API_MODULE(cdc_kafka, InitModule)
