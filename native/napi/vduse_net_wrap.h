// NativeVduseNet: a virtio-net device served by this process through VDUSE. Created, relinked and
// closed on the libuv threadpool; frames the driver transmits (while no wire is connected) reach JS
// in batches, one call per wake-up of the JS thread; send() and connect() never block. connectTap()
// opens a TAP interface and disconnectTap() closes it, both on the threadpool.
#pragma once

#include <napi.h>

#include <memory>

#include "vduse/tap_port.h"
#include "vduse/vduse_net.h"

namespace vdpa {

struct JsFrames;

class VduseNetWrap : public Napi::ObjectWrap<VduseNetWrap> {
 public:
  static const napi_type_tag kTag;
  // Adds createVduseNet(options) -> Promise<NativeVduseNet> to `exports`.
  static void registerIn(Napi::Env env, Napi::Object exports);
  explicit VduseNetWrap(const Napi::CallbackInfo& info);
  ~VduseNetWrap() override;

 private:
  static Napi::Value Create(const Napi::CallbackInfo& info);
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value ConnectTap(const Napi::CallbackInfo& info);
  Napi::Value DisconnectTap(const Napi::CallbackInfo& info);
  Napi::Value SetLink(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  VduseNet& open(const char* what);

  std::shared_ptr<VduseNet> net_;
  std::shared_ptr<JsFrames> frames_;
  std::shared_ptr<TapPort> tap_;
  bool tapBusy_ = false;  // a connectTap() or disconnectTap() under way
  bool closing_ = false;
  VduseNetStats finalStats_;  // after close
};

}  // namespace vdpa
