// Per-environment state (main thread and every worker have their own): the constructors of the
// native objects other native objects hand out, and the VdpaError class the TypeScript layer registers.
#pragma once

#include <napi.h>

namespace vdpa {

struct AddonData {
  Napi::FunctionReference deviceCtor;
  Napi::FunctionReference queueCtor;
  Napi::FunctionReference regionCtor;
  Napi::FunctionReference vhostCtor;
  Napi::FunctionReference errorClass;  // set by setErrorClass(); plain Error until then
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace vdpa
