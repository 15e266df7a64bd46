// NativeDevice: one open virtio device. Hands out its queues, regions and (on vhost-vdpa) the vhost
// control, and closes them all with the device.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "device/virtio_device.h"
#include "napi/fd_poll.h"

namespace vdpa {

class QueueWrap;

// The device, or an EBADF VdpaError (syscall `what`) once it is closed.
VirtioDevice& requireOpen(const std::shared_ptr<VirtioDevice>& device, const char* what);

// The device, or EBADF once closed, or EBUSY while a threadpool step runs on it.
VirtioDevice& requireIdle(const std::shared_ptr<VirtioDevice>& device, const char* what);

class DeviceWrap : public Napi::ObjectWrap<DeviceWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  static const napi_type_tag kTag;
  // Constructed only by openDevice(), with the device opened on the threadpool.
  explicit DeviceWrap(const Napi::CallbackInfo& info);
  ~DeviceWrap() override;

  // openDevice(path, options): opens the transport on the threadpool; resolves to a NativeDevice.
  static Napi::Value OpenDevice(const Napi::CallbackInfo& info);

  // A queue finalized before its device (environment teardown finalizes in any order).
  void forgetQueue(QueueWrap* queue);

 private:
  // Stops the config and removal watches (their fds go with the transport).
  void stopWatches();
  // The JS-thread end of a close, once the device is reset: hands over the completions the device
  // wrote before its reset (`deliver`), stops the queues, frees rings and regions, and (`detach`)
  // detaches the buffers of live regions. A finalizer passes false for both: it must not run JS.
  void finishClose(bool deliver, bool detach);
  // Runs `work` on the threadpool with the device marked busy; `done` makes the JS side.
  Napi::Value step(Napi::Env env, const char* name, std::function<void(VirtioDevice&)> work,
                   std::function<Napi::Value(Napi::Env)> done);
  static void onConfigChange(void* self);
  static void onRemoval(void* self);
  // Calls the JS config callback with `kind` ("config" or "removal").
  void notifyConfig(const char* kind);

  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Status(const Napi::CallbackInfo& info);
  Napi::Value SetStatus(const Napi::CallbackInfo& info);
  Napi::Value Negotiate(const Napi::CallbackInfo& info);
  Napi::Value ReadConfig(const Napi::CallbackInfo& info);
  Napi::Value WriteConfig(const Napi::CallbackInfo& info);
  Napi::Value MaxQueueSize(const Napi::CallbackInfo& info);
  Napi::Value CreateQueue(const Napi::CallbackInfo& info);
  Napi::Value AllocRegion(const Napi::CallbackInfo& info);
  Napi::Value DmaPending(const Napi::CallbackInfo& info);
  Napi::Value ApplyDmaUpdates(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value OnConfigChange(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Vhost(const Napi::CallbackInfo& info);
  // Hand-over (lib/handover.ts): this device takes over from another one.
  Napi::Value ShareHandles(const Napi::CallbackInfo& info);
  Napi::Value AdoptRegions(const Napi::CallbackInfo& info);
  Napi::Value CommitAdoption(const Napi::CallbackInfo& info);
  Napi::Value CanSuspend(const Napi::CallbackInfo& info);
  Napi::Value Suspend(const Napi::CallbackInfo& info);
  // The DeviceWrap behind argument `i` (TypeError otherwise).
  static DeviceWrap* deviceArg(const Napi::CallbackInfo& info, size_t i);

  std::shared_ptr<VirtioDevice> device_;
  bool closeStarted_ = false;
  // Closed with the device. The raw pointer stays valid while the strong reference holds the object.
  std::vector<std::pair<Napi::ObjectReference, QueueWrap*>> queues_;
  std::vector<Napi::ObjectReference> regions_;  // weak: detached with the device
  // Regions of the device this one takes over from, until the hand-over commits (weak; never
  // detached by this device's close: the buffers belong to the other device until then).
  std::vector<Napi::ObjectReference> adopted_;
  FdPoll* configPoll_ = nullptr;
  FdPoll* removalPoll_ = nullptr;
  Napi::FunctionReference configCallback_;
};

}  // namespace vdpa
