// One blocking device step (open, negotiate, queue setup, start, close) on the libuv threadpool,
// settled as a Promise on the JS thread, in the baton style of serialport and node-usb: `work` makes
// the system calls and touches no JS value; `done` runs on the JS thread afterwards, whether `work`
// succeeded or not, and makes the JS-visible changes.
#pragma once

#include <napi.h>

#include <exception>
#include <functional>

namespace vdpa {

class DeviceTask : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  // `ok`: whether `work` returned normally. The value resolves the promise (ignored when !ok).
  using Done = std::function<Napi::Value(Napi::Env env, bool ok)>;

  // Queues the task and returns its promise. `keep` (the JS object the task works for) stays
  // reachable until `done` has run, so a device dropped meanwhile is finalized only afterwards.
  static Napi::Promise run(Napi::Env env, const char* name, Napi::Object keep, Work work, Done done);

 private:
  DeviceTask(Napi::Env env, const char* name, Napi::Object keep, Work work, Done done);
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error&) override { OnOK(); }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  Work work_;
  Done done_;
  std::exception_ptr failure_;
};

}  // namespace vdpa
