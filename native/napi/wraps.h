// The N-API surface: one type-tagged ObjectWrap per native object. These classes convert and check
// arguments and hand off to the core; they make no decisions of their own.
#pragma once

#include <napi.h>

#include <memory>
#include <utility>
#include <vector>

#include "device/virtio_device.h"
#include "napi/batch.h"
#include "napi/fd_poll.h"
#include "transport/vhost_vdpa/vhost_vdpa_transport.h"

namespace vdpa {

// Rejects a receiver or argument that is not the native object it claims to be.
void requireTag(const Napi::Env& env, const Napi::Value& v, const napi_type_tag& tag, const char* what);

class QueueWrap;
class RegionWrap;

class DeviceWrap : public Napi::ObjectWrap<DeviceWrap> {
  friend class QueueWrap;

 public:
  static Napi::Function define(Napi::Env env);
  static const napi_type_tag kTag;
  explicit DeviceWrap(const Napi::CallbackInfo& info);
  ~DeviceWrap() override;

  std::shared_ptr<VirtioDevice> device() const { return device_; }

 private:
  VirtioDevice& open(const Napi::Env& env);
  VhostVdpaTransport& vhost(const Napi::Env& env);
  void closeAll();
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
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value OnConfigChange(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  // vhost-vdpa only (EOPNOTSUPP on other transports).
  Napi::Value VhostInfo(const Napi::CallbackInfo& info);
  Napi::Value VhostSuspend(const Napi::CallbackInfo& info);
  Napi::Value VhostResume(const Napi::CallbackInfo& info);
  Napi::Value VhostVringBase(const Napi::CallbackInfo& info);
  Napi::Value VhostVqGroup(const Napi::CallbackInfo& info);
  Napi::Value VhostSetGroupAsid(const Napi::CallbackInfo& info);

  std::shared_ptr<VirtioDevice> device_;
  // Closed with the device. The raw pointer stays valid while the strong reference holds the object.
  std::vector<std::pair<Napi::ObjectReference, QueueWrap*>> queues_;
  std::vector<Napi::ObjectReference> regions_;  // weak: detached with the device
  FdPoll* configPoll_ = nullptr;
  FdPoll* removalPoll_ = nullptr;
  Napi::FunctionReference configCallback_;
};

class QueueWrap : public Napi::ObjectWrap<QueueWrap> {
  friend class DeviceWrap;

 public:
  static Napi::Function define(Napi::Env env);
  static const napi_type_tag kTag;
  explicit QueueWrap(const Napi::CallbackInfo& info);
  ~QueueWrap() override;

  void init(std::shared_ptr<VirtioDevice> device, VirtQueue* queue, Napi::Function callback);
  // Stops completion delivery (device closing).
  void stop();

 private:
  static void onCall(void* self);
  VirtQueue& live(const Napi::Env& env);

  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);

  std::shared_ptr<VirtioDevice> device_;
  DeviceWrap* owner_ = nullptr;  // cleared by whichever of the two is finalized first
  VirtQueue* queue_ = nullptr;
  FdPoll* poll_ = nullptr;
  Napi::FunctionReference callback_;
  Napi::ObjectReference completionsRef_;  // keeps the shared completion array alive
  Completion* completions_ = nullptr;
  DecodedBatch batch_;  // scratch for submit()
  std::unique_ptr<Napi::AsyncContext> async_;
};

class RegionWrap : public Napi::ObjectWrap<RegionWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  static const napi_type_tag kTag;
  explicit RegionWrap(const Napi::CallbackInfo& info);
  ~RegionWrap() override;

  void init(Napi::Env env, std::shared_ptr<VirtioDevice> device, std::shared_ptr<MemoryRegion> region, uint32_t handle);
  // Unmaps from the device and detaches the ArrayBuffer so no JS view outlives the mapping.
  void free(Napi::Env env);

 private:
  Napi::Value Free(const Napi::CallbackInfo& info);

  std::shared_ptr<VirtioDevice> device_;
  std::shared_ptr<MemoryRegion> region_;
  uint32_t handle_ = 0;
  Napi::Reference<Napi::ArrayBuffer> buffer_;  // weak
};

}  // namespace vdpa
