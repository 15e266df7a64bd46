#include "napi/wraps.h"

#include <cstring>
#include <utility>

#include "napi/addon_data.h"
#include "napi/batch.h"
#include "napi/errors.h"
#include "transport/open_transport.h"

namespace vdpa {

const napi_type_tag DeviceWrap::kTag = {0x7664706164657669ULL, 0x6365000000000001ULL};
const napi_type_tag QueueWrap::kTag = {0x7664706171756575ULL, 0x6500000000000002ULL};
const napi_type_tag RegionWrap::kTag = {0x7664706172656769ULL, 0x6f6e000000000003ULL};

void requireTag(const Napi::Env& env, const Napi::Value& v, const napi_type_tag& tag, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&tag))
    throwTypeError(env, std::string("expected a native ") + what + " object");
}

namespace {

uint32_t u32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) throwTypeError(info.Env(), std::string(name) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throwRangeError(info.Env(), std::string(name) + " must be an integer from 0 to 2^32-1");
  return static_cast<uint32_t>(d);
}

// Converts the JS options object into an OptionBag; the transport parses and checks what it uses.
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

// ---------------------------------------------------------------------------------------------
// Device

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
                         InstanceMethod<&DeviceWrap::Start>("start"),
                         InstanceMethod<&DeviceWrap::OnConfigChange>("onConfigChange"),
                         InstanceMethod<&DeviceWrap::Close>("close"),
                         InstanceMethod<&DeviceWrap::VhostInfo>("vhostInfo"),
                         InstanceMethod<&DeviceWrap::VhostSuspend>("vhostSuspend"),
                         InstanceMethod<&DeviceWrap::VhostResume>("vhostResume"),
                         InstanceMethod<&DeviceWrap::VhostVringBase>("vhostVringBase"),
                         InstanceMethod<&DeviceWrap::VhostVqGroup>("vhostVqGroup"),
                         InstanceMethod<&DeviceWrap::VhostSetGroupAsid>("vhostSetGroupAsid"),
                     });
}

DeviceWrap::DeviceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceWrap>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "device path must be a string");
  if (!info[1].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  try {
    device_ = std::make_shared<VirtioDevice>(openTransport(path, toOptionBag(info[1].As<Napi::Object>())));
  } catch (const SysError& e) {
    throw makeVdpaError(env, e);
  } catch (const ArgError& e) {
    if (e.kind() == ArgError::Kind::kType) throw Napi::TypeError::New(env, e.what());
    throw Napi::RangeError::New(env, e.what());
  }
  info.This().As<Napi::Object>().TypeTag(&kTag);
}

DeviceWrap::~DeviceWrap() {
  // A finalizer must not throw or call back into JS objects that may be mid-collection: stop the
  // queues through their raw pointers (our strong references kept them alive), then reset the device.
  for (FdPoll** p : {&configPoll_, &removalPoll_}) {
    if (*p) (*p)->release();
    *p = nullptr;
  }
  for (auto& q : queues_) {
    if (!q.second) continue;
    q.second->stop();
    q.second->owner_ = nullptr;
  }
  if (device_) {
    try {
      device_->close();
    } catch (...) {
      // Nothing to report to at finalization; the fds close with the transport.
    }
  }
}

VirtioDevice& DeviceWrap::open(const Napi::Env& env) {
  if (!device_ || device_->closed())
    throw makeVdpaError(env, SysError(EBADF, "device", device_ ? device_->path() : "", "EBADF: the device is closed"));
  return *device_;
}

void DeviceWrap::closeAll() {
  for (FdPoll** p : {&configPoll_, &removalPoll_}) {
    if (*p) (*p)->release();
    *p = nullptr;
  }
  for (auto& q : queues_) {
    if (!q.second) continue;
    q.second->stop();
    q.second->owner_ = nullptr;
  }
  queues_.clear();
  // Reset first: the device may still be reading and writing buffers of requests in flight, so no
  // mapping may go before it has stopped. close() resets, unmaps everything and drops the transport.
  if (device_) device_->close();
  // Then detach every live buffer view; their pages stay mapped in this process until the last
  // view is collected, but the device no longer reaches them.
  std::vector<Napi::ObjectReference> regions = std::move(regions_);
  regions_.clear();
  for (auto& r : regions) {
    Napi::Value v = r.Value();
    if (v.IsEmpty() || !v.IsObject()) continue;
    try {
      RegionWrap::Unwrap(v.As<Napi::Object>())->free(Env());
    } catch (const SysError&) {
    }
  }
}

Napi::Value DeviceWrap::Info(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    VirtioDevice& d = open(info.Env());
    Transport& t = d.transport();
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
    return Napi::Number::New(info.Env(), open(info.Env()).transport().status());
  });
}

Napi::Value DeviceWrap::SetStatus(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    uint32_t s = u32Arg(info, 0, "status");
    if (s > 255) throwRangeError(info.Env(), "status is one byte");
    open(info.Env()).transport().setStatus(static_cast<uint8_t>(s));
    return info.Env().Undefined();
  });
}

Napi::Value DeviceWrap::Negotiate(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    if (!info[0].IsBigInt()) throwTypeError(info.Env(), "features must be a bigint");
    bool lossless = true;
    uint64_t wanted = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throwRangeError(info.Env(), "features must fit in 64 bits");
    return Napi::BigInt::New(info.Env(), open(info.Env()).negotiate(wanted));
  });
}

Napi::Value DeviceWrap::ReadConfig(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    uint32_t off = u32Arg(info, 0, "offset"), len = u32Arg(info, 1, "length");
    if (len > 4096) throwRangeError(info.Env(), "config reads are at most 4096 bytes");
    auto out = Napi::Uint8Array::New(info.Env(), len);
    open(info.Env()).transport().readConfig(off, out.Data(), len);
    return out;
  });
}

Napi::Value DeviceWrap::WriteConfig(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    uint32_t off = u32Arg(info, 0, "offset");
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throwTypeError(info.Env(), "data must be a Uint8Array");
    auto data = info[1].As<Napi::Uint8Array>();
    open(info.Env()).transport().writeConfig(off, data.Data(), static_cast<uint32_t>(data.ByteLength()));
    return info.Env().Undefined();
  });
}

Napi::Value DeviceWrap::MaxQueueSize(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    uint32_t index = u32Arg(info, 0, "index");
    Transport& t = open(info.Env()).transport();
    if (index >= t.maxQueues()) throwRangeError(info.Env(), "no such queue");
    return Napi::Number::New(info.Env(), t.maxQueueSize(static_cast<uint16_t>(index)));
  });
}

Napi::Value DeviceWrap::CreateQueue(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    uint32_t index = u32Arg(info, 0, "index"), size = u32Arg(info, 1, "size");
    if (index > 0xffff || size > 0xffff) throwRangeError(env, "queue index and size are 16-bit");
    if (!info[2].IsFunction()) throwTypeError(env, "completion callback must be a function");
    VirtQueue& q = open(env).createQueue(static_cast<uint16_t>(index), static_cast<uint16_t>(size));
    Napi::Object obj = addonData(env).queueCtor.New({});
    QueueWrap* wrap = QueueWrap::Unwrap(obj);
    wrap->init(device_, &q, info[2].As<Napi::Function>());
    wrap->owner_ = this;
    queues_.emplace_back(Napi::Persistent(obj), wrap);
    return obj;
  });
}

Napi::Value DeviceWrap::AllocRegion(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    if (!info[0].IsNumber()) throwTypeError(env, "size must be a number");
    double size = info[0].As<Napi::Number>().DoubleValue();
    if (!(size >= 1 && size <= double(uint64_t{1} << 40)) || size != static_cast<double>(static_cast<uint64_t>(size)))
      throwRangeError(env, "size must be an integer from 1 to 2^40");
    bool huge = info[1].ToBoolean();
    VirtioDevice& d = open(env);
    auto region = std::make_shared<MemoryRegion>(static_cast<size_t>(size), huge);
    uint32_t handle = d.addRegion(region);
    Napi::Object obj = addonData(env).regionCtor.New({});
    RegionWrap::Unwrap(obj)->init(env, device_, region, handle);
    // Forget regions the GC already took, then remember this one weakly.
    std::vector<Napi::ObjectReference> live;
    for (auto& r : regions_)
      if (!r.Value().IsEmpty()) live.push_back(std::move(r));
    regions_ = std::move(live);
    regions_.push_back(Napi::Weak(obj));
    return obj;
  });
}

Napi::Value DeviceWrap::Start(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    open(info.Env()).start();
    return info.Env().Undefined();
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
  Napi::HandleScope scope(env);
  napi_value arg = Napi::String::New(env, kind);
  napi_value result;
  if (napi_make_callback(env, nullptr, Value(), configCallback_.Value(), 1, &arg, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

Napi::Value DeviceWrap::OnConfigChange(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    if (!info[0].IsFunction()) throwTypeError(env, "callback must be a function");
    int fd = open(env).transport().configChangeFd();
    configCallback_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (fd >= 0 && !configPoll_) configPoll_ = FdPoll::start(env, fd, onConfigChange, this);
    const int removal = open(env).transport().removalFd();
    if (removal >= 0 && !removalPoll_) removalPoll_ = FdPoll::start(env, removal, onRemoval, this);
    return env.Undefined();
  });
}

Napi::Value DeviceWrap::Close(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    closeAll();
    return info.Env().Undefined();
  });
}

VhostVdpaTransport& DeviceWrap::vhost(const Napi::Env& env) {
  VirtioDevice& d = open(env);
  // kind() names the concrete class (the addon is built without RTTI).
  if (std::strcmp(d.transport().kind(), "vhost-vdpa") != 0)
    throw makeVdpaError(env, SysError(EOPNOTSUPP, "vhost", d.transport().path(), "EOPNOTSUPP: not a vhost-vdpa device",
                                      "only /dev/vhost-vdpa-N devices have this"));
  return static_cast<VhostVdpaTransport&>(d.transport());
}

Napi::Value DeviceWrap::VhostInfo(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Device");
    VhostVdpaTransport& t = vhost(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("backendFeatures", Napi::BigInt::New(env, t.backendFeatures()));
    o.Set("offeredBackendFeatures", Napi::BigInt::New(env, t.offeredBackendFeatures()));
    o.Set("iovaFirst", Napi::BigInt::New(env, t.iovaRange().first));
    o.Set("iovaLast", Napi::BigInt::New(env, t.iovaRange().last));
    o.Set("groupCount", t.groupCount());
    o.Set("asidCount", t.asidCount());
    return o;
  });
}

Napi::Value DeviceWrap::VhostSuspend(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    vhost(info.Env()).suspend();
    return info.Env().Undefined();
  });
}

Napi::Value DeviceWrap::VhostResume(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    vhost(info.Env()).resume();
    return info.Env().Undefined();
  });
}

Napi::Value DeviceWrap::VhostVringBase(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    const uint32_t index = u32Arg(info, 0, "index");
    VhostVdpaTransport& t = vhost(info.Env());
    if (index >= t.maxQueues()) throwRangeError(info.Env(), "no such queue");
    return Napi::Number::New(info.Env(), t.getVringBase(static_cast<uint16_t>(index)));
  });
}

Napi::Value DeviceWrap::VhostVqGroup(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    const uint32_t index = u32Arg(info, 0, "index");
    VhostVdpaTransport& t = vhost(info.Env());
    if (index >= t.maxQueues()) throwRangeError(info.Env(), "no such queue");
    return Napi::Number::New(info.Env(), t.vqGroup(static_cast<uint16_t>(index)));
  });
}

Napi::Value DeviceWrap::VhostSetGroupAsid(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Device");
    vhost(info.Env()).setGroupAsid(u32Arg(info, 0, "group"), u32Arg(info, 1, "asid"));
    return info.Env().Undefined();
  });
}

// ---------------------------------------------------------------------------------------------
// Queue

Napi::Function QueueWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeQueue",
                     {
                         InstanceMethod<&QueueWrap::Submit>("submit"),
                         InstanceMethod<&QueueWrap::Ref>("ref"),
                         InstanceMethod<&QueueWrap::Unref>("unref"),
                     });
}

QueueWrap::QueueWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<QueueWrap>(info) {
  info.This().As<Napi::Object>().TypeTag(&kTag);
}

QueueWrap::~QueueWrap() {
  stop();
  // At environment teardown finalizers run in any order: tell the device we are gone.
  if (owner_)
    for (auto& q : owner_->queues_)
      if (q.second == this) q.second = nullptr;
}

void QueueWrap::init(std::shared_ptr<VirtioDevice> device, VirtQueue* queue, Napi::Function callback) {
  Napi::Env env = Env();
  device_ = std::move(device);
  queue_ = queue;
  callback_ = Napi::Persistent(callback);
  async_ = std::make_unique<Napi::AsyncContext>(env, "vdpa:queue");
  // Completions land in one shared array: [token, len] pairs, at most one per descriptor.
  const size_t n = queue->ring->size();
  auto arr = Napi::Uint32Array::New(env, 2 * n);
  completions_ = reinterpret_cast<Completion*>(arr.Data());
  completionsRef_ = Napi::Persistent(arr.As<Napi::Object>());
  Value().Set("completions", arr);
  Value().Set("size", Napi::Number::New(env, n));
  Value().Set("index", Napi::Number::New(env, queue->index));
  poll_ = FdPoll::start(env, queue->callFd.get(), onCall, this);
}

void QueueWrap::stop() {
  if (poll_) {
    poll_->release();
    poll_ = nullptr;
  }
  // The device is about to drop the ring; what it still held is failed by the TypeScript side.
  queue_ = nullptr;
}

VirtQueue& QueueWrap::live(const Napi::Env& env) {
  if (!queue_ || !device_ || device_->closed())
    throw makeVdpaError(env, SysError(EBADF, "queue", device_ ? device_->path() : "", "EBADF: the device is closed"));
  return *queue_;
}

void QueueWrap::onCall(void* self) {
  auto* w = static_cast<QueueWrap*>(self);
  drainEventFd(w->queue_->callFd.get());
  DriverQueue& ring = *w->queue_->ring;
  const size_t cap = ring.size();
  Napi::Env env = w->Env();
  Napi::HandleScope scope(env);
  for (;;) {
    // Drain, re-arm, and drain again if the device raced us. Interrupts are re-armed only once the
    // ring is empty; a full completion array is handed over first and draining goes on.
    size_t n = 0;
    bool armed = false;
    while (n < cap) {
      n += ring.drain(w->completions_ + n, cap - n);
      if (n < cap && !ring.enableInterrupts()) {
        armed = true;
        break;
      }
    }
    const bool broken = ring.broken();
    if (n == 0 && !broken) return;
    napi_value args[2] = {Napi::Number::New(env, static_cast<double>(n)),
                          broken ? Napi::String::New(env, ring.brokenReason()) : env.Undefined()};
    napi_value result;
    if (napi_make_callback(env, static_cast<napi_async_context>(*w->async_), w->Value(), w->callback_.Value(), 2, args,
                           &result) == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
      return;
    }
    // The callback may have closed the device (and with it this queue).
    if (armed || broken || !w->queue_) return;
  }
}

// Batch layout (Uint32Array): per chain [token, count, then count x (region, offset, length, flags)];
// flags bit 0 = device-writable. Returns how many chains the ring took; the rest are the caller's to
// resubmit after completions.
Napi::Value QueueWrap::Submit(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Queue");
    VirtQueue& q = live(env);
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      throwTypeError(env, "batch must be a Uint32Array");
    auto batch = info[0].As<Napi::Uint32Array>();
    const uint32_t chains = u32Arg(info, 1, "count");
    const uint32_t* w = batch.Data();
    const size_t words = batch.ElementLength();
    if (q.ring->broken())
      throw makeVdpaError(
          env, SysError(EPROTO, "virtqueue", device_->path(), "EPROTO: queue is broken: " + q.ring->brokenReason()));
    decodeBatch(
        env, w, words, chains, *q.ring,
        [this](uint32_t r, uint64_t off, uint64_t len, uint64_t* iova) {
          return device_->translate(r, off, len, iova);
        },
        batch_);
    const uint32_t accepted = addBatch(*q.ring, batch_);
    device_->publish(q);
    return Napi::Number::New(env, accepted);
  });
}

Napi::Value QueueWrap::Ref(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Queue");
    if (poll_) poll_->ref();
    return info.Env().Undefined();
  });
}

Napi::Value QueueWrap::Unref(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Queue");
    if (poll_) poll_->unref();
    return info.Env().Undefined();
  });
}

// ---------------------------------------------------------------------------------------------
// Region

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
  } catch (...) {
    // Finalizers cannot report; the mapping goes away with the device at the latest.
  }
}

void RegionWrap::init(Napi::Env env, std::shared_ptr<VirtioDevice> device, std::shared_ptr<MemoryRegion> region,
                      uint32_t handle) {
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
}

void RegionWrap::free(Napi::Env env) {
  if (!handle_) return;
  const uint32_t handle = std::exchange(handle_, 0);
  if (!buffer_.IsEmpty() && !buffer_.Value().IsEmpty()) napi_detach_arraybuffer(env, buffer_.Value());
  buffer_.Reset();
  region_.reset();
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
