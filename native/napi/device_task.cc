#include "napi/device_task.h"

#include <utility>

#include "napi/errors.h"

namespace vdpa {

Napi::Promise DeviceTask::run(Napi::Env env, const char* name, Napi::Object keep, Work work, Done done) {
  auto* task = new DeviceTask(env, name, keep, std::move(work), std::move(done));
  Napi::Promise promise = task->deferred_.Promise();
  task->Queue();  // libuv owns the task from here; AsyncWorker deletes it after OnOK
  return promise;
}

DeviceTask::DeviceTask(Napi::Env env, const char* name, Napi::Object keep, Work work, Done done)
    : Napi::AsyncWorker(env, name),
      deferred_(Napi::Promise::Deferred::New(env)),
      keep_(Napi::Persistent(keep)),
      work_(std::move(work)),
      done_(std::move(done)) {}

void DeviceTask::Execute() {
  try {
    work_();
  } catch (...) {
    failure_ = std::current_exception();
  }
}

namespace {

// The JS error for what a task's work threw (on the JS thread).
Napi::Value errorValue(Napi::Env env, const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const Napi::Error& e) {
    return e.Value();
  } catch (const SysError& e) {
    return makeVdpaError(env, e).Value();
  } catch (const ArgError& e) {
    if (e.kind() == ArgError::Kind::kType) return Napi::TypeError::New(env, e.what()).Value();
    return Napi::RangeError::New(env, e.what()).Value();
  } catch (const std::bad_alloc&) {
    return makeVdpaError(env, makeSysError(ENOMEM, "malloc")).Value();
  } catch (const std::exception& e) {
    return Napi::Error::New(env, e.what()).Value();
  } catch (...) {
    return Napi::Error::New(env, "unknown native failure").Value();
  }
}

}  // namespace

void DeviceTask::OnOK() {
  Napi::Env env = Env();
  // In an environment being torn down (worker.terminate(), process.exit()) every N-API call may
  // fail, and node-addon-api reports that by throwing: nothing may escape into libuv.
  try {
    Napi::HandleScope scope(env);
    const bool ok = !failure_;
    Napi::Value value = done_(env, ok);
    if (ok)
      deferred_.Resolve(value.IsEmpty() ? env.Undefined() : value);
    else
      deferred_.Reject(errorValue(env, failure_));
  } catch (...) {
    const std::exception_ptr thrown = std::current_exception();
    try {
      deferred_.Reject(errorValue(env, thrown));
    } catch (...) {
      // The environment is going away: there is nobody left to tell.
    }
  }
  keep_.Reset();
}

}  // namespace vdpa
