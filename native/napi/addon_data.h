// Per-environment state (main thread and every worker have their own): class constructors and the
// VdpaError class the TypeScript layer registers.
#pragma once

#include <napi.h>

namespace vdpa {

struct AddonData {
  Napi::FunctionReference deviceCtor;
  Napi::FunctionReference queueCtor;
  Napi::FunctionReference regionCtor;
  Napi::FunctionReference errorClass;  // set by setErrorClass(); plain Error until then
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace vdpa
