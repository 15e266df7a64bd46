// The single place where native failures become JavaScript errors.
#pragma once

#include <napi.h>

#include <exception>

#include "common/arg_error.h"
#include "common/sys_error.h"

namespace vdpa {

// A VdpaError (code, errno, syscall, path, hint) for a failed system call or device operation.
Napi::Error makeVdpaError(Napi::Env env, const SysError& e);
[[noreturn]] void throwTypeError(Napi::Env env, const std::string& msg);
[[noreturn]] void throwRangeError(Napi::Env env, const std::string& msg);
// Exports setErrorClass(cls): the class makeVdpaError instantiates (every addon of this package
// lets the TypeScript layer register VdpaError).
void registerErrorClass(Napi::Env env, Napi::Object exports);

// Native code called from libuv (completions, config changes) after a JS call failed: a pending
// exception (the callback threw) is reported as uncaught, as for any event callback; with nothing
// pending (the environment is being torn down: worker.terminate(), process.exit()) nothing is done.
void reportCallbackFailure(napi_env env) noexcept;
// The same for a failure caught as a Napi::Error.
void reportCallbackFailure(napi_env env, const Napi::Error& e) noexcept;

// Runs `body` and converts any C++ exception into a pending JavaScript exception, so nothing
// unwinds across the N-API boundary.
template <typename Body>
Napi::Value guarded(const Napi::CallbackInfo& info, Body&& body) {
  Napi::Env env = info.Env();
  try {
    return body();
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const SysError& e) {
    makeVdpaError(env, e).ThrowAsJavaScriptException();
  } catch (const ArgError& e) {
    if (e.kind() == ArgError::Kind::kType)
      Napi::TypeError::New(env, e.what()).ThrowAsJavaScriptException();
    else
      Napi::RangeError::New(env, e.what()).ThrowAsJavaScriptException();
  } catch (const std::bad_alloc&) {
    makeVdpaError(env, makeSysError(ENOMEM, "malloc")).ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

}  // namespace vdpa
