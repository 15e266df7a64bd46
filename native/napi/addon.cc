// Module entry: registers the native classes for this environment (main thread or worker).
#include <napi.h>

#include "napi/addon_data.h"
#include "napi/bench_binding.h"
#include "napi/errors.h"
#include "napi/management_binding.h"
#include "napi/wraps.h"
#include "transport/mock/mock_transport.h"

namespace vdpa {
namespace {

Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "error class must be a constructor");
  addonData(info.Env()).errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  Napi::Function device = DeviceWrap::define(env);
  Napi::Function queue = QueueWrap::define(env);
  Napi::Function region = RegionWrap::define(env);
  data->deviceCtor = Napi::Persistent(device);
  data->queueCtor = Napi::Persistent(queue);
  data->regionCtor = Napi::Persistent(region);
  exports.Set("Device", device);
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  exports.Set("mockFaults", [&] {
    Napi::Array a = Napi::Array::New(env);
    uint32_t i = 0;
    for (const auto& n : MockTransport::faultNames()) a.Set(i++, n);
    return a;
  }());
  registerBench(env, exports);
  registerManagement(env, exports);
  return exports;
}

}  // namespace
}  // namespace vdpa

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return vdpa::Init(env, exports); }
NODE_API_MODULE(vdpa, InitModule)
