#include "napi/device_wrap.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "napi/addon_data.h"
#include "napi/args.h"
#include "napi/device_task.h"
#include "napi/errors.h"
#include "napi/queue_wrap.h"
#include "napi/region_wrap.h"
#include "napi/vhost_wrap.h"
#include "transport/open_transport.h"

namespace vdpa {

const napi_type_tag DeviceWrap::kTag = {0x7664706164657669ULL, 0x6365000000000001ULL};

VirtioDevice& requireOpen(const std::shared_ptr<VirtioDevice>& device, const char* what) {
  if (!device || device->closed()) throwSys(EBADF, what, device ? device->path() : "", "the device is closed");
  return *device;
}

VirtioDevice& requireIdle(const std::shared_ptr<VirtioDevice>& device, const char* what) {
  VirtioDevice& d = requireOpen(device, what);
  if (d.busy())
    throwSys(EBUSY, what, d.path(),
             "another step (open, negotiate, createQueue, start) is still running on the device: await each call");
  return d;
}

namespace {

// Converts the JS open options into an OptionBag; the transport parses and checks what it uses.
OptionBag toOptionBag(const Napi::Object& o) {
  OptionBag bag;
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    const std::string key = keys.Get(i).ToString().Utf8Value();
    Napi::Value v = o.Get(key);
    OptionValue out;
    if (v.IsUndefined()) continue;
    if (v.IsNumber()) {
      out.kind = OptionValue::Kind::kNumber;
      out.number = v.As<Napi::Number>().DoubleValue();
    } else if (v.IsBoolean()) {
      out.kind = OptionValue::Kind::kBoolean;
      out.boolean = v.As<Napi::Boolean>().Value();
    } else if (v.IsString()) {
      out.kind = OptionValue::Kind::kString;
      out.string = v.As<Napi::String>().Utf8Value();
    } else if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
      auto a = v.As<Napi::Uint8Array>();
      out.kind = OptionValue::Kind::kBytes;
      out.bytes.assign(a.Data(), a.Data() + a.ElementLength());
    } else {
      throwTypeError(o.Env(), "option " + key + " must be a number, boolean, string or Uint8Array");
    }
    bag.emplace(key, std::move(out));
  }
  return bag;
}

}  // namespace

Napi::Function DeviceWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeDevice",
                     {
                         InstanceMethod<&DeviceWrap::Info>("info"),
                         InstanceMethod<&DeviceWrap::Status>("status"),
                         InstanceMethod<&DeviceWrap::SetStatus>("setStatus"),
                         InstanceMethod<&DeviceWrap::Negotiate>("negotiate"),
                         InstanceMethod<&DeviceWrap::ReadConfig>("readConfig"),
                         InstanceMethod<&DeviceWrap::WriteConfig>("writeConfig"),
                         InstanceMethod<&DeviceWrap::MaxQueueSize>("maxQueueSize"),
                         InstanceMethod<&DeviceWrap::CreateQueue>("createQueue"),
                         InstanceMethod<&DeviceWrap::AllocRegion>("allocRegion"),
                         InstanceMethod<&DeviceWrap::DmaPending>("dmaPending"),
                         InstanceMethod<&DeviceWrap::ApplyDmaUpdates>("applyDmaUpdates"),
                         InstanceMethod<&DeviceWrap::Start>("start"),
                         InstanceMethod<&DeviceWrap::OnConfigChange>("onConfigChange"),
                         InstanceMethod<&DeviceWrap::Close>("close"),
                         InstanceMethod<&DeviceWrap::Vhost>("vhost"),
                         InstanceMethod<&DeviceWrap::ShareHandles>("shareHandles"),
                         InstanceMethod<&DeviceWrap::AdoptRegions>("adoptRegions"),
                         InstanceMethod<&DeviceWrap::CommitAdoption>("commitAdoption"),
                         InstanceMethod<&DeviceWrap::CanSuspend>("canSuspend"),
                         InstanceMethod<&DeviceWrap::Suspend>("suspend"),
                     });
}

namespace {
// Tags the External that carries an opened device into the constructor.
const napi_type_tag kOpenedTag = {0x7664706164657669ULL, 0x6365000000000004ULL};
}  // namespace

DeviceWrap::DeviceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceWrap>(info) {
  Napi::Env env = info.Env();
  bool tagged = false;
  if (info.Length() > 0 && info[0].IsExternal()) napi_check_object_type_tag(env, info[0], &kOpenedTag, &tagged);
  if (!tagged) throw Napi::TypeError::New(env, "NativeDevice cannot be constructed: use openDevice()");
  device_ = *info[0].As<Napi::External<std::shared_ptr<VirtioDevice>>>().Data();
  info.This().As<Napi::Object>().TypeTag(&kTag);
}

Napi::Value DeviceWrap::OpenDevice(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const std::string path = stringArg(info, 0, "device path");
    auto bag = std::make_shared<OptionBag>(toOptionBag(objectArg(info, 1, "options")));
    auto opened = std::make_shared<std::shared_ptr<VirtioDevice>>();
    return DeviceTask::run(
        env, "vdpa:open", Napi::Object::New(env),
        [path, bag, opened] { *opened = std::make_shared<VirtioDevice>(openTransport(path, *bag)); },
        [opened](Napi::Env env, bool ok) -> Napi::Value {
          if (!ok) return env.Undefined();
          auto carrier = Napi::External<std::shared_ptr<VirtioDevice>>::New(env, opened.get());
          napi_type_tag_object(env, carrier, &kOpenedTag);
          return addonData(env).deviceCtor.New({carrier});
        });
  });
}

DeviceWrap::~DeviceWrap() {
  // Garbage collection or environment teardown (worker.terminate(), process.exit()) of a device
  // never closed: the same teardown as close(), waiting for nothing, and without running JS.
  try {
    stopWatches();
    if (device_) {
      device_->closeBegin({});
      device_->closeOnWorker(std::chrono::milliseconds(0));
    }
    finishClose(false, false);
  } catch (...) {
    // Nothing to report to at finalization; the fds close with the transport.
  }
}

void DeviceWrap::forgetQueue(QueueWrap* queue) {
  for (auto& q : queues_)
    if (q.second == queue) q.second = nullptr;
}

void DeviceWrap::stopWatches() {
  for (FdPoll** p : {&configPoll_, &removalPoll_}) {
    if (*p) (*p)->release();
    *p = nullptr;
  }
}

void DeviceWrap::finishClose(bool deliver, bool detach) {
  // The device is reset: what it wrote to the used rings before is all it will ever write.
  if (deliver)
    for (auto& q : queues_)
      if (q.second) q.second->deliverNow();
  // Through the raw pointers: our strong references kept the queue objects alive.
  for (auto& q : queues_)
    if (q.second) q.second->stop();
  queues_.clear();
  // A hand-over to this device that did not commit: the buffers stay with the other device.
  for (auto& r : std::exchange(adopted_, {})) {
    Napi::Value v = r.Value();
    if (!v.IsEmpty() && v.IsObject() && device_) RegionWrap::Unwrap(v.As<Napi::Object>())->forget(device_.get());
  }
  std::vector<Napi::ObjectReference> regions = std::move(regions_);
  regions_.clear();
  if (device_) device_->closeEnd();
  if (!detach) return;
  // Detach every live buffer view; their pages stay mapped in this process until the last view is
  // collected, but the device no longer reaches them.
  for (auto& r : regions) {
    Napi::Value v = r.Value();
    if (v.IsEmpty() || !v.IsObject()) continue;
    try {
      RegionWrap::Unwrap(v.As<Napi::Object>())->free(Env());
    } catch (const SysError&) {
    }
  }
}

Napi::Value DeviceWrap::step(Napi::Env env, const char* name, std::function<void(VirtioDevice&)> work,
                             std::function<Napi::Value(Napi::Env)> done) {
  std::shared_ptr<VirtioDevice> device = device_;
  requireIdle(device, name).setBusy(true);
  return DeviceTask::run(
      env, name, Value(), [device, work] { work(*device); },
      [device, done](Napi::Env env, bool ok) -> Napi::Value {
        device->setBusy(false);
        return ok ? done(env) : env.Undefined();
      });
}

Napi::Value DeviceWrap::Info(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    Transport& t = requireIdle(device_, "device").transport();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("transport", t.kind());
    o.Set("path", t.path());
    o.Set("deviceId", t.deviceId());
    o.Set("vendorId", t.vendorId());
    o.Set("deviceFeatures", Napi::BigInt::New(info.Env(), t.deviceFeatures()));
    o.Set("maxQueues", t.maxQueues());
    o.Set("configSize", t.configSize());
    return o;
  });
}

Napi::Value DeviceWrap::Status(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    return Napi::Number::New(info.Env(), requireIdle(device_, "device").transport().status());
  });
}

Napi::Value DeviceWrap::SetStatus(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    const auto status = static_cast<uint8_t>(u32Arg(info, 0, "status", 0, 0xff));
    requireIdle(device_, "device").transport().setStatus(status);
    return info.Env().Undefined();
  });
}

Napi::Value DeviceWrap::Negotiate(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    const uint64_t wanted = u64BigIntArg(info, 0, "features");
    auto accepted = std::make_shared<uint64_t>(0);
    return step(
        info.Env(), "negotiate", [wanted, accepted](VirtioDevice& d) { *accepted = d.negotiate(wanted); },
        [accepted](Napi::Env env) -> Napi::Value { return Napi::BigInt::New(env, *accepted); });
  });
}

Napi::Value DeviceWrap::ReadConfig(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    const uint32_t off = u32Arg(info, 0, "offset"), len = u32Arg(info, 1, "length", 0, 4096);
    auto out = Napi::Uint8Array::New(info.Env(), len);
    requireIdle(device_, "device").transport().readConfig(off, out.Data(), len);
    return out;
  });
}

Napi::Value DeviceWrap::WriteConfig(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    const uint32_t off = u32Arg(info, 0, "offset");
    auto data = uint8ArrayArg(info, 1, "data");
    requireIdle(device_, "device").transport().writeConfig(off, data.Data(), static_cast<uint32_t>(data.ByteLength()));
    return info.Env().Undefined();
  });
}

Napi::Value DeviceWrap::MaxQueueSize(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    const uint32_t index = u32Arg(info, 0, "index");
    Transport& t = requireIdle(device_, "device").transport();
    if (index >= t.maxQueues()) throwRangeError(info.Env(), "no such queue");
    return Napi::Number::New(info.Env(), t.maxQueueSize(static_cast<uint16_t>(index)));
  });
}

Napi::Value DeviceWrap::CreateQueue(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    const auto index = static_cast<uint16_t>(u32Arg(info, 0, "index", 0, 0xffff));
    const auto size = static_cast<uint16_t>(u32Arg(info, 1, "size", 0, 0xffff));
    auto callback =
        std::make_shared<Napi::FunctionReference>(Napi::Persistent(functionArg(info, 2, "completion callback")));
    auto created = std::make_shared<VirtQueue*>(nullptr);
    return step(
        env, "createQueue", [index, size, created](VirtioDevice& d) { *created = &d.createQueue(index, size); },
        [this, callback, created](Napi::Env env) -> Napi::Value {
          Napi::Object obj = addonData(env).queueCtor.New({});
          QueueWrap* wrap = QueueWrap::Unwrap(obj);
          wrap->init(device_, *created, callback->Value(), this);
          queues_.emplace_back(Napi::Persistent(obj), wrap);
          return obj;
        });
  });
}

Napi::Value DeviceWrap::AllocRegion(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    const auto size = static_cast<size_t>(integerArg(info, 0, "size", 1, uint64_t{1} << 40));
    const bool huge = boolArg(info, 1, "hugePages");
    VirtioDevice& d = requireIdle(device_, "device");
    auto region = std::make_shared<MemoryRegion>(size, huge);
    const uint32_t handle = d.addRegion(region);
    Napi::Object obj = addonData(env).regionCtor.New({});
    RegionWrap::Unwrap(obj)->init(device_, region, handle);
    // Forget regions the GC already took, then remember this one weakly.
    std::vector<Napi::ObjectReference> live;
    for (auto& r : regions_)
      if (!r.Value().IsEmpty()) live.push_back(std::move(r));
    regions_ = std::move(live);
    regions_.push_back(Napi::Weak(obj));
    return obj;
  });
}

Napi::Value DeviceWrap::DmaPending(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    return dmaPending(info, device_);
  });
}

Napi::Value DeviceWrap::ApplyDmaUpdates(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    return applyDmaUpdates(info, device_);
  });
}

Napi::Value DeviceWrap::Start(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    return step(
        info.Env(), "start", [](VirtioDevice& d) { d.start(); }, [](Napi::Env env) { return env.Undefined(); });
  });
}

void DeviceWrap::onConfigChange(void* self) {
  auto* w = static_cast<DeviceWrap*>(self);
  drainEventFd(w->device_->transport().configChangeFd());
  w->notifyConfig("config");
}

void DeviceWrap::onRemoval(void* self) {
  auto* w = static_cast<DeviceWrap*>(self);
  drainEventFd(w->device_->transport().removalFd());
  w->notifyConfig("removal");
}

void DeviceWrap::notifyConfig(const char* kind) {
  Napi::Env env = Env();
  try {
    Napi::HandleScope scope(env);
    napi_value arg = Napi::String::New(env, kind);
    napi_value result;
    if (napi_make_callback(env, nullptr, Value(), configCallback_.Value(), 1, &arg, &result) != napi_ok)
      reportCallbackFailure(env);
  } catch (const Napi::Error& e) {
    reportCallbackFailure(env, e);
  }
}

Napi::Value DeviceWrap::OnConfigChange(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    Napi::Function callback = functionArg(info, 0, "callback");
    Transport& t = requireIdle(device_, "device").transport();
    configCallback_ = Napi::Persistent(callback);
    const int config = t.configChangeFd(), removal = t.removalFd();
    if (config >= 0 && !configPoll_) configPoll_ = FdPoll::start(env, config, onConfigChange, this);
    if (removal >= 0 && !removalPoll_) removalPoll_ = FdPoll::start(env, removal, onRemoval, this);
    return env.Undefined();
  });
}

// close(awaited, budgetMs): the queues whose chains are waited for (at most budgetMs, and at most
// VirtioDevice::kQuiesceBudget) before the reset. Completions keep being delivered meanwhile; the
// promise resolves once the device is reset, its memory unmapped and its queues stopped.
Napi::Value DeviceWrap::Close(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    if (closeStarted_) throwSys(EALREADY, "close", device_->path(), "close() was called already");
    if (info.Length() < 1 || !info[0].IsArray()) throwTypeError(env, "awaited queues must be an array");
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<uint16_t> awaited;
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value v = list.Get(i);
      if (!v.IsNumber()) throwTypeError(env, "awaited queues must be queue indices");
      awaited.push_back(static_cast<uint16_t>(v.As<Napi::Number>().Uint32Value()));
    }
    const auto budget = std::chrono::milliseconds(integerArg(info, 1, "budget", 0, 1u << 31));
    VirtioDevice& d = requireIdle(device_, "close");
    closeStarted_ = true;
    stopWatches();
    d.closeBegin(awaited);
    std::shared_ptr<VirtioDevice> device = device_;
    return DeviceTask::run(
        env, "vdpa:close", Value(), [device, budget] { device->closeOnWorker(budget); },
        [this](Napi::Env env, bool) -> Napi::Value {
          finishClose(true, true);
          return env.Undefined();
        });
  });
}

// The vhost-vdpa control, or undefined on other transports.
Napi::Value DeviceWrap::Vhost(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    if (!requireIdle(device_, "device").transport().asVhost()) return env.Undefined();
    Napi::Object obj = addonData(env).vhostCtor.New({});
    VhostWrap::Unwrap(obj)->init(device_);
    return obj;
  });
}

DeviceWrap* DeviceWrap::deviceArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  bool tagged = false;
  if (info.Length() > i && info[i].IsObject()) napi_check_object_type_tag(env, info[i], &kTag, &tagged);
  if (!tagged) throwTypeError(env, "argument must be a NativeDevice");
  return Unwrap(info[i].As<Napi::Object>());
}

// shareHandles(from): this device, just opened, draws region handles from `from`'s space.
Napi::Value DeviceWrap::ShareHandles(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    DeviceWrap* from = deviceArg(info, 0);
    requireIdle(device_, "hand-over").shareHandles(requireOpen(from->device_, "hand-over"));
    return info.Env().Undefined();
  });
}

// adoptRegions(from, skip): registers every live region of `from` not yet here (and whose handle is
// not in `skip`) on this device under its handle; returns [{ region, pending }].
Napi::Value DeviceWrap::AdoptRegions(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    DeviceWrap* from = deviceArg(info, 0);
    if (info.Length() < 2 || !info[1].IsArray()) throwTypeError(env, "skip must be an array of handles");
    Napi::Array skipList = info[1].As<Napi::Array>();
    std::vector<uint32_t> skip;
    for (uint32_t i = 0; i < skipList.Length(); i++) skip.push_back(skipList.Get(i).ToNumber().Uint32Value());
    VirtioDevice& d = requireIdle(device_, "hand-over");
    requireOpen(from->device_, "hand-over");
    Napi::Array out = Napi::Array::New(env);
    for (auto& r : from->regions_) {
      Napi::Value v = r.Value();
      if (v.IsEmpty() || !v.IsObject()) continue;
      RegionWrap* w = RegionWrap::Unwrap(v.As<Napi::Object>());
      const uint32_t h = w->handle();
      if (h == 0 || d.hasRegion(h) || std::find(skip.begin(), skip.end(), h) != skip.end()) continue;
      const bool pending = w->adoptInto(device_);
      adopted_.push_back(Napi::Weak(v.As<Napi::Object>()));
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("region", v);
      entry.Set("pending", Napi::Boolean::New(env, pending));
      out.Set(out.Length(), entry);
    }
    return out;
  });
}

// commitAdoption(from): the regions adopted from `from` are this device's now; `from`'s close
// leaves their buffers attached.
Napi::Value DeviceWrap::CommitAdoption(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    DeviceWrap* from = deviceArg(info, 0);
    requireOpen(device_, "hand-over");
    for (auto& r : std::exchange(adopted_, {})) {
      Napi::Value v = r.Value();
      if (v.IsEmpty() || !v.IsObject()) continue;
      Napi::Object obj = v.As<Napi::Object>();
      RegionWrap::Unwrap(obj)->moveTo(device_);
      auto& theirs = from->regions_;
      theirs.erase(std::remove_if(theirs.begin(), theirs.end(),
                                  [&](Napi::ObjectReference& o) { return !o.Value().IsEmpty() && o.Value() == obj; }),
                   theirs.end());
      regions_.push_back(Napi::Weak(obj));
    }
    return info.Env().Undefined();
  });
}

Napi::Value DeviceWrap::CanSuspend(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    return Napi::Boolean::New(info.Env(), requireIdle(device_, "suspend").canSuspend());
  });
}

// suspend(): the transport's suspend on the threadpool (a VHOST_VDPA_SUSPEND waits for the device).
Napi::Value DeviceWrap::Suspend(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    return step(
        info.Env(), "suspend", [](VirtioDevice& d) { d.suspend(); }, [](Napi::Env env) { return env.Undefined(); });
  });
}

}  // namespace vdpa
