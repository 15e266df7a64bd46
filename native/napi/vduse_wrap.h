// NativeVduse: a VDUSE device served by this process (today virtio-blk). Created and closed on the
// libuv threadpool, and so is resize(); stats() reads the request thread's counters without blocking. With a JS handler
// (options.onRequests) the device thread hands requests over in batches, one call per wake-up of the
// JS thread, and complete() answers them.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "vduse/vduse_blk.h"

namespace vdpa {

struct JsRequests;

class VduseWrap : public Napi::ObjectWrap<VduseWrap> {
 public:
  static const napi_type_tag kTag;
  // Adds createVduseBlk(options) -> Promise<NativeVduse> to `exports`.
  static void registerIn(Napi::Env env, Napi::Object exports);
  explicit VduseWrap(const Napi::CallbackInfo& info);
  ~VduseWrap() override;

 private:
  static Napi::Value CreateBlk(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Complete(const Napi::CallbackInfo& info);
  Napi::Value Resize(const Napi::CallbackInfo& info);

  std::shared_ptr<VduseBlk> blk_;
  std::shared_ptr<JsRequests> requests_;  // the JS handler's batches, if it has one
  bool closing_ = false;
  std::vector<VduseQueueStats> finalStats_;  // after close
};

}  // namespace vdpa
