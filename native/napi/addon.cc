// Module entry of the shipped addon: registers the native classes for this environment (main thread
// or worker). Exports only what lib/ uses; test and benchmark hooks live in the testing addon.
#include <napi.h>

#include "napi/addon_data.h"
#include "napi/device_wrap.h"
#include "napi/errors.h"
#include "napi/management_binding.h"
#include "napi/net_loop_wrap.h"
#include "napi/queue_wrap.h"
#include "napi/region_wrap.h"
#include "napi/vduse_net_wrap.h"
#include "napi/vduse_wrap.h"
#include "napi/vhost_wrap.h"
#include "transport/mock/mock_net.h"
#include "transport/mock/mock_transport.h"

namespace vdpa {
namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  data->queueCtor = Napi::Persistent(QueueWrap::define(env));
  data->regionCtor = Napi::Persistent(RegionWrap::define(env));
  data->vhostCtor = Napi::Persistent(VhostWrap::define(env));
  data->deviceCtor = Napi::Persistent(DeviceWrap::define(env));
  exports.Set("openDevice", Napi::Function::New<DeviceWrap::OpenDevice>(env, "openDevice"));
  exports.Set("NativeNetLoop", NetLoopWrap::define(env));
  registerErrorClass(env, exports);
  Napi::Array faults = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& n : MockTransport::faultNames()) faults.Set(i++, n);
  exports.Set("mockFaults", faults);
  Napi::Array netFaults = Napi::Array::New(env);
  i = 0;
  for (const auto& n : MockNet::faultNames()) netFaults.Set(i++, n);
  exports.Set("mockNetFaults", netFaults);
  registerManagement(env, exports);
  VduseWrap::registerIn(env, exports);
  VduseNetWrap::registerIn(env, exports);
  return exports;
}

}  // namespace
}  // namespace vdpa

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return vdpa::Init(env, exports); }
NODE_API_MODULE(vdpa, InitModule)
