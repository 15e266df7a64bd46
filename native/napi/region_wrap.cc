#include "napi/region_wrap.h"

#include <exception>
#include <utility>

#include "napi/args.h"
#include "napi/device_wrap.h"
#include "napi/errors.h"

namespace vdpa {

namespace {

class DmaUpdateWorker final : public Napi::AsyncWorker {
 public:
  DmaUpdateWorker(Napi::Function callback, std::shared_ptr<VirtioDevice> device)
      : Napi::AsyncWorker(callback, "vdpa:dmaUpdate"), device_(std::move(device)), jobs_(device_->takeDmaJobs()) {}

  // The IOTLB writes: a VDUSE device waits for its daemon's answer.
  void Execute() override { device_->applyDmaJobs(jobs_); }

  void OnOK() override {
    Napi::Env env = Env();
    device_->finishDmaJobs(jobs_);
    Napi::Array failures = Napi::Array::New(env);
    for (const auto& j : jobs_) {
      if (!j.map || !j.error) continue;
      Napi::Object f = Napi::Object::New(env);
      f.Set("handle", Napi::Number::New(env, j.handle));
      f.Set("error", toJsError(env, j.error));
      failures.Set(failures.Length(), f);
    }
    Callback().Call({failures});
  }

 private:
  static Napi::Value toJsError(Napi::Env env, const std::exception_ptr& error) {
    try {
      std::rethrow_exception(error);
    } catch (const SysError& e) {
      return makeVdpaError(env, e).Value();
    } catch (const std::exception& e) {
      return Napi::Error::New(env, e.what()).Value();
    } catch (...) {
      return Napi::Error::New(env, "DMA mapping failed").Value();
    }
  }

  std::shared_ptr<VirtioDevice> device_;
  std::vector<VirtioDevice::DmaJob> jobs_;
};

}  // namespace

Napi::Value dmaPending(const Napi::CallbackInfo& info, const std::shared_ptr<VirtioDevice>& device) {
  return Napi::Boolean::New(info.Env(), device && !device->closed() && device->dmaPending());
}

Napi::Value applyDmaUpdates(const Napi::CallbackInfo& info, const std::shared_ptr<VirtioDevice>& device) {
  Napi::Function callback = functionArg(info, 0, "callback");
  requireOpen(device, "allocBuffer");
  (new DmaUpdateWorker(callback, device))->Queue();
  return info.Env().Undefined();
}

const napi_type_tag RegionWrap::kTag = {0x7664706172656769ULL, 0x6f6e000000000003ULL};

Napi::Function RegionWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeRegion", {InstanceMethod<&RegionWrap::Free>("free")});
}

RegionWrap::RegionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RegionWrap>(info) {
  info.This().As<Napi::Object>().TypeTag(&kTag);
}

RegionWrap::~RegionWrap() {
  if (!device_ || !handle_) return;
  try {
    device_->removeRegion(handle_);
    for (auto& d : alsoOn_) d->removeRegion(handle_);
  } catch (...) {
    // Finalizers cannot report; the mapping goes away with the device at the latest.
  }
}

bool RegionWrap::adoptInto(const std::shared_ptr<VirtioDevice>& device) {
  device->adoptRegion(handle_, region_);
  alsoOn_.push_back(device);
  return !device->mapped(handle_);
}

void RegionWrap::moveTo(const std::shared_ptr<VirtioDevice>& device) {
  forget(device.get());
  device_ = device;
}

void RegionWrap::forget(const VirtioDevice* device) {
  for (auto it = alsoOn_.begin(); it != alsoOn_.end(); ++it) {
    if (it->get() != device) continue;
    alsoOn_.erase(it);
    return;
  }
}

void RegionWrap::init(std::shared_ptr<VirtioDevice> device, std::shared_ptr<MemoryRegion> region, uint32_t handle) {
  Napi::Env env = Env();
  device_ = std::move(device);
  region_ = std::move(region);
  handle_ = handle;
  // The ArrayBuffer holds its own reference: the pages stay mapped while any JS view exists.
  auto* keep = new std::shared_ptr<MemoryRegion>(region_);
  auto ab = Napi::ArrayBuffer::New(
      env, region_->data(), region_->size(), [](Napi::Env, void*, std::shared_ptr<MemoryRegion>* hint) { delete hint; },
      keep);
  buffer_ = Napi::Weak(ab);
  Napi::Object self = Value();
  self.Set("buffer", ab);
  self.Set("handle", Napi::Number::New(env, handle));
  self.Set("size", Napi::Number::New(env, static_cast<double>(region_->size())));
  self.Set("hugePages", Napi::Boolean::New(env, region_->hugePages()));
  self.Set("pending", Napi::Boolean::New(env, !device_->mapped(handle)));
}

void RegionWrap::free(Napi::Env env) {
  if (!handle_) return;
  const uint32_t handle = std::exchange(handle_, 0);
  if (!buffer_.IsEmpty() && !buffer_.Value().IsEmpty()) napi_detach_arraybuffer(env, buffer_.Value());
  buffer_.Reset();
  region_.reset();
  for (auto& d : std::exchange(alsoOn_, {})) {
    try {
      d->removeRegion(handle);
    } catch (const SysError&) {
      // The adopting device's close drops the mapping at the latest.
    }
  }
  device_->removeRegion(handle);  // may throw (unmap refused); our side is already consistent
}

Napi::Value RegionWrap::Free(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Region");
    free(info.Env());
    return info.Env().Undefined();
  });
}

}  // namespace vdpa
