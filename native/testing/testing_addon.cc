// Module entry of the testing addon: the same per-environment state and error class as the shipped
// addon, then one register call per testing unit.
#include "testing/testing_addon.h"

#include <napi.h>

#include "napi/addon_data.h"
#include "napi/errors.h"

namespace vdpa {
namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  registerErrorClass(env, exports);
  registerRingLoopback(env, exports);
  registerBlkLoop(env, exports);
  registerRingRules(env, exports);
  registerVirtioPciTesting(env, exports);
  return exports;
}

}  // namespace
}  // namespace vdpa

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return vdpa::Init(env, exports); }
NODE_API_MODULE(vdpa_testing, InitModule)
