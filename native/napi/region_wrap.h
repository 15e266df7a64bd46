// NativeRegion: a DMA region of an open device, seen by JS as an ArrayBuffer over its pages.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "device/virtio_device.h"
#include "memory/memory_region.h"

namespace vdpa {

// Whether the device has region mappings or unmaps queued (see VirtioDevice::addRegion).
Napi::Value dmaPending(const Napi::CallbackInfo& info, const std::shared_ptr<VirtioDevice>& device);
// applyDmaUpdates(callback): applies the queued updates on the threadpool (the caller keeps every
// chain off the device meanwhile), then calls callback(failures), failures = [{ handle, error }] for
// the mappings the device refused.
Napi::Value applyDmaUpdates(const Napi::CallbackInfo& info, const std::shared_ptr<VirtioDevice>& device);

class RegionWrap : public Napi::ObjectWrap<RegionWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  static const napi_type_tag kTag;
  explicit RegionWrap(const Napi::CallbackInfo& info);
  ~RegionWrap() override;

  void init(std::shared_ptr<VirtioDevice> device, std::shared_ptr<MemoryRegion> region, uint32_t handle);
  // Unmaps from the device and detaches the ArrayBuffer so no JS view outlives the mapping.
  void free(Napi::Env env);

  // Hand-over: registers the region on `device` too, under the same handle (a device sharing this
  // one's handle space); returns whether its mapping there is still queued. Unless freed.
  bool adoptInto(const std::shared_ptr<VirtioDevice>& device);
  uint32_t handle() const { return handle_; }
  // The hand-over committed: `device` (adopted into) owns the region from now on; the old one drops it
  // at its close. Or it failed: `device` closes and forgets the region; the buffer stays.
  void moveTo(const std::shared_ptr<VirtioDevice>& device);
  void forget(const VirtioDevice* device);

 private:
  Napi::Value Free(const Napi::CallbackInfo& info);

  std::shared_ptr<VirtioDevice> device_;
  std::vector<std::shared_ptr<VirtioDevice>> alsoOn_;  // adopted by a hand-over not yet committed
  std::shared_ptr<MemoryRegion> region_;
  uint32_t handle_ = 0;
  Napi::Reference<Napi::ArrayBuffer> buffer_;  // weak
};

}  // namespace vdpa
