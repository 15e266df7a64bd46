// NativeVduse: a VDUSE device served by this process (today virtio-blk). Created and closed on the
// libuv threadpool; stats() reads the request thread's counters without blocking.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "vduse/vduse_blk.h"

namespace vdpa {

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

  std::shared_ptr<VduseBlk> blk_;
  bool closing_ = false;
  std::vector<VduseQueueStats> finalStats_;  // after close
};

}  // namespace vdpa
