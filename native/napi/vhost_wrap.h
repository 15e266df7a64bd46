// NativeVhost: the vhost-vdpa ioctls without a virtio equivalent, for a device whose transport is
// vhost-vdpa (DeviceWrap hands one out only then). Fails with EBADF once the device is closed.
#pragma once

#include <napi.h>

#include <memory>

#include "device/virtio_device.h"

namespace vdpa {

class VhostWrap : public Napi::ObjectWrap<VhostWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  static const napi_type_tag kTag;
  explicit VhostWrap(const Napi::CallbackInfo& info);

  void init(std::shared_ptr<VirtioDevice> device);

 private:
  VhostVdpaTransport& vhost();

  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Suspend(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value VringBase(const Napi::CallbackInfo& info);
  Napi::Value VqGroup(const Napi::CallbackInfo& info);
  Napi::Value SetGroupAsid(const Napi::CallbackInfo& info);

  std::shared_ptr<VirtioDevice> device_;
};

}  // namespace vdpa
