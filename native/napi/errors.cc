#include "napi/errors.h"

#include "napi/addon_data.h"

namespace vdpa {

Napi::Error makeVdpaError(Napi::Env env, const SysError& e) {
  Napi::Object props = Napi::Object::New(env);
  props.Set("code", errnoName(e.err()));
  // Negative, like Node's own fs errors on Linux.
  props.Set("errno", -e.err());
  props.Set("syscall", e.syscall());
  if (!e.path().empty()) props.Set("path", e.path());
  if (!e.hint().empty()) props.Set("hint", e.hint());
  AddonData& data = addonData(env);
  if (!data.errorClass.IsEmpty()) {
    Napi::Object err = data.errorClass.New({Napi::String::New(env, e.what()), props});
    return Napi::Error(env, err);
  }
  Napi::Error err = Napi::Error::New(env, e.what());
  for (const char* key : {"code", "errno", "syscall", "path", "hint"})
    if (props.Has(key)) err.Value().Set(key, props.Get(key));
  return err;
}

void registerErrorClass(Napi::Env env, Napi::Object exports) {
  auto set = [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "error class must be a constructor");
    addonData(info.Env()).errorClass = Napi::Persistent(info[0].As<Napi::Function>());
    return info.Env().Undefined();
  };
  exports.Set("setErrorClass", Napi::Function::New(env, set, "setErrorClass"));
}

void throwTypeError(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
void throwRangeError(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

void reportCallbackFailure(napi_env env) noexcept {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  napi_value err = nullptr;
  if (napi_get_and_clear_last_exception(env, &err) == napi_ok && err) napi_fatal_exception(env, err);
}

void reportCallbackFailure(napi_env env, const Napi::Error& e) noexcept {
  try {
    napi_value err = e.Value();
    if (err) napi_fatal_exception(env, err);
  } catch (...) {
    // The error object itself is out of reach: the environment is going away.
  }
}

}  // namespace vdpa
