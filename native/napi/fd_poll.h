// Watches an fd with uv_poll on the environment's own loop. The handle outlives its owner until libuv
// has closed it, and it is closed when the environment (e.g. a worker) is torn down.
#pragma once

#include <node_api.h>
#include <uv.h>

namespace vdpa {

class FdPoll {
 public:
  using Callback = void (*)(void* owner);

  // Starts watching `fd` for readability; `cb(owner)` runs on the JS thread. Starts unref'd.
  static FdPoll* start(napi_env env, int fd, Callback cb, void* owner);
  void ref() {
    if (!closing_) uv_ref(reinterpret_cast<uv_handle_t*>(&handle_));
  }
  void unref() {
    if (!closing_) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_));
  }
  // The owner lets go: the callback never runs again, and the object frees itself once closed.
  void release();

 private:
  FdPoll() = default;
  void close();
  static void onPoll(uv_poll_t* h, int status, int events);
  static void onClose(uv_handle_t* h);
  static void onEnvCleanup(napi_async_cleanup_hook_handle hook, void* arg);

  uv_poll_t handle_{};
  napi_async_cleanup_hook_handle hook_ = nullptr;
  Callback cb_ = nullptr;
  void* owner_ = nullptr;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace vdpa
