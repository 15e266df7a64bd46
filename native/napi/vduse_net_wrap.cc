#include "napi/vduse_net_wrap.h"

#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "napi/args.h"
#include "napi/device_task.h"
#include "napi/errors.h"

namespace vdpa {

const napi_type_tag VduseNetWrap::kTag = {0x7664706176647573ULL, 0x6500000000000008ULL};

namespace {

// Tags the External that carries a created device into the constructor.
const napi_type_tag kCreatedTag = {0x7664706176647573ULL, 0x6500000000000009ULL};
// Frames waiting for the JS thread, at most: past it the device drops them (and counts them).
constexpr size_t kPendingFrames = 1024;

VduseNetOptions netOptions(Napi::Object o) {
  VduseNetOptions n;
  Napi::Value name = o.Get("name");
  if (!name.IsString()) throwTypeArg("name must be a string");
  n.name = name.As<Napi::String>().Utf8Value();
  Napi::Value control = o.Get("controlPath");
  if (!control.IsUndefined()) {
    if (!control.IsString()) throwTypeArg("controlPath must be a string");
    n.controlPath = control.As<Napi::String>().Utf8Value();
  }
  Napi::Value mac = o.Get("mac");
  if (!mac.IsTypedArray() || mac.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      mac.As<Napi::Uint8Array>().ByteLength() != 6)
    throwTypeArg("mac must be a Uint8Array of 6 bytes");
  std::memcpy(n.mac.data(), mac.As<Napi::Uint8Array>().Data(), 6);
  const auto num = [&](const char* key, uint32_t min, uint32_t max) {
    Napi::Value v = o.Get(key);
    if (!v.IsNumber()) throwTypeArg(std::string(key) + " must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<uint32_t>(d)))
      throwRangeArg(std::string(key) + " is out of range");
    return static_cast<uint16_t>(d);
  };
  n.mtu = num("mtu", 68, 65535);
  n.queueSize = num("queueSize", 2, 32768);
  Napi::Value link = o.Get("linkUp");
  if (!link.IsBoolean()) throwTypeArg("linkUp must be a boolean");
  n.linkUp = link.As<Napi::Boolean>().Value();
  Napi::Value gso = o.Get("gso");
  if (!gso.IsUndefined()) {
    if (!gso.IsBoolean()) throwTypeArg("gso must be a boolean");
    n.gso = gso.As<Napi::Boolean>().Value();
  }
  return n;
}

Napi::Object statsObject(Napi::Env env, const VduseNetStats& s) {
  Napi::Object o = Napi::Object::New(env);
  const auto set = [&](const char* k, uint64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
  set("txFrames", s.txFrames);
  set("txBytes", s.txBytes);
  set("txDropped", s.txDropped);
  set("rxFrames", s.rxFrames);
  set("rxBytes", s.rxBytes);
  set("rxDropped", s.rxDropped);
  set("txGsoFrames", s.txGsoFrames);
  set("rxGsoFrames", s.rxGsoFrames);
  set("segmentsMade", s.segmentsMade);
  return o;
}

}  // namespace

// Frames the driver transmitted, waiting for the JS thread; the first one of a batch schedules the call.
struct JsFrames {
  std::mutex lock;
  std::vector<std::vector<uint8_t>> items;
  Napi::ThreadSafeFunction tsfn;

  bool push(const std::shared_ptr<JsFrames>& self, std::vector<uint8_t> frame) {
    bool first;
    {
      std::lock_guard<std::mutex> l(lock);
      if (items.size() >= kPendingFrames) return false;
      first = items.empty();
      items.push_back(std::move(frame));
    }
    if (first) tsfn.NonBlockingCall([self](Napi::Env env, Napi::Function fn) { self->deliver(env, fn); });
    return true;
  }

  void deliver(Napi::Env env, Napi::Function fn) {
    std::vector<std::vector<uint8_t>> batch;
    {
      std::lock_guard<std::mutex> l(lock);
      batch.swap(items);
    }
    if (batch.empty() || env == nullptr) return;
    try {
      Napi::HandleScope scope(env);
      Napi::Array a = Napi::Array::New(env, batch.size());
      for (uint32_t i = 0; i < batch.size(); i++)
        a.Set(i, Napi::Buffer<uint8_t>::Copy(env, batch[i].data(), batch[i].size()));
      fn.Call({a});
    } catch (const Napi::Error& e) {
      reportCallbackFailure(env, e);
    } catch (...) {
      reportCallbackFailure(env);
    }
  }
};

struct NetCarrier {
  std::shared_ptr<VduseNet> net;
  std::shared_ptr<JsFrames> frames;
};

void VduseNetWrap::registerIn(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "NativeVduseNet",
                                    {
                                        InstanceMethod<&VduseNetWrap::Send>("send"),
                                        InstanceMethod<&VduseNetWrap::Connect>("connect"),
                                        InstanceMethod<&VduseNetWrap::ConnectTap>("connectTap"),
                                        InstanceMethod<&VduseNetWrap::DisconnectTap>("disconnectTap"),
                                        InstanceMethod<&VduseNetWrap::SetLink>("setLink"),
                                        InstanceMethod<&VduseNetWrap::Stats>("stats"),
                                        InstanceMethod<&VduseNetWrap::Close>("close"),
                                    });
  auto* ref = new Napi::FunctionReference(Napi::Persistent(ctor));
  env.AddCleanupHook([ref] { delete ref; });
  exports.Set("createVduseNet", Napi::Function::New(env, &VduseNetWrap::Create, "createVduseNet", ref));
}

VduseNetWrap::VduseNetWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VduseNetWrap>(info) {
  Napi::Env env = info.Env();
  bool tagged = false;
  if (info.Length() > 0 && info[0].IsExternal()) napi_check_object_type_tag(env, info[0], &kCreatedTag, &tagged);
  if (!tagged) throw Napi::TypeError::New(env, "NativeVduseNet cannot be constructed: use createVduseNet()");
  auto* carried = info[0].As<Napi::External<NetCarrier>>().Data();
  net_ = carried->net;
  frames_ = carried->frames;
  Napi::Object self = info.This().As<Napi::Object>();
  self.TypeTag(&kTag);
  self.Set("name", net_->device().name());
  self.Set("maxFrame", Napi::Number::New(env, net_->maxFrame()));
}

VduseNetWrap::~VduseNetWrap() {
  // Collected without close(): stopping the thread and destroying the device may wait for the
  // kernel, so that happens off the JS thread.
  if (net_ && !closing_)
    std::thread([net = std::move(net_), frames = std::move(frames_), tap = std::move(tap_)]() mutable {
      if (tap) tap->stop();  // before the NIC goes: see TapPort::stop
      net->connect(nullptr);
      tap.reset();
      net.reset();
      if (frames) frames->tsfn.Release();
    }).detach();
}

VduseNet& VduseNetWrap::open(const char* what) {
  if (!net_ || closing_) throwSys(EBADF, what, "vduse", "the device is closed");
  return *net_;
}

Napi::Value VduseNetWrap::Create(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto* ctor = static_cast<Napi::FunctionReference*>(info.Data());
    Napi::Object options = objectArg(info, 0, "options");
    const VduseNetOptions opts = netOptions(options);
    Napi::Value onFrames = options.Get("onFrames");
    if (!onFrames.IsFunction()) throwTypeArg("onFrames must be a function");
    auto created = std::make_shared<NetCarrier>();
    auto frames = std::make_shared<JsFrames>();
    frames->tsfn = Napi::ThreadSafeFunction::New(env, onFrames.As<Napi::Function>(), "vdpa:vduse-frames", 0, 1);
    frames->tsfn.Unref(env);  // an idle device does not keep the process alive
    created->frames = frames;
    std::weak_ptr<JsFrames> weak = frames;
    VduseNet::Sink sink = [weak](std::vector<uint8_t> frame) {
      auto f = weak.lock();
      return f && f->push(f, std::move(frame));
    };
    return DeviceTask::run(
        env, "vdpa:vduse-net-create", Napi::Object::New(env),
        [opts, created, sink] { created->net = std::make_shared<VduseNet>(opts, sink); },
        [created, ctor](Napi::Env env, bool ok) -> Napi::Value {
          if (!ok) {
            created->frames->tsfn.Release();
            return env.Undefined();
          }
          auto carrier = Napi::External<NetCarrier>::New(env, created.get());
          napi_type_tag_object(env, carrier, &kCreatedTag);
          return ctor->New({carrier});
        });
  });
}

Napi::Value VduseNetWrap::Send(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "VduseNet");
    Napi::Uint8Array frame = uint8ArrayArg(info, 0, "frame");
    VduseNet& net = open("send");
    return Napi::Boolean::New(info.Env(), net.receive(frame.Data(), frame.ByteLength()));
  });
}

Napi::Value VduseNetWrap::Connect(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "VduseNet");
    VduseNet& net = open("connect");
    std::shared_ptr<VduseNet> peer;
    if (info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined()) {
      requireTag(env, info[0], kTag, "peer");
      auto* other = Napi::ObjectWrap<VduseNetWrap>::Unwrap(info[0].As<Napi::Object>());
      other->open("connect");
      if (tap_ || tapBusy_ || other->tap_ || other->tapBusy_)
        throwSys(EBUSY, "connect", "vduse", "a TAP interface is connected: disconnect() first");
      peer = other->net_;
    } else if (tap_ || tapBusy_) {
      return env.Undefined();  // the TAP stays until disconnectTap()
    }
    net.connect(peer);
    return env.Undefined();
  });
}

Napi::Value VduseNetWrap::ConnectTap(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "VduseNet");
    Napi::Value nameArg = info.Length() > 0 ? info[0] : env.Undefined();
    if (!nameArg.IsString()) throwTypeArg("name must be a string");
    const std::string name = nameArg.As<Napi::String>().Utf8Value();
    if (name.empty() || name.size() > TapPort::kMaxNameBytes || name.find_first_of("/: \t\n") != std::string::npos)
      throwRangeArg("name must be 1 to 15 bytes without '/', ':' or spaces");
    VduseNet& net = open("connectTap");
    if (tap_ || tapBusy_ || net.connected())
      throwSys(EBUSY, "connectTap", "vduse", "the NIC is already connected: disconnect() first");
    tapBusy_ = true;
    std::shared_ptr<VduseNet> shared = net_;
    auto made = std::make_shared<std::shared_ptr<TapPort>>();
    return DeviceTask::run(
        env, "vdpa:vduse-net-tap", info.This().As<Napi::Object>(),
        [name, shared, made] { *made = std::make_shared<TapPort>(name, shared); },
        [this, made](Napi::Env env, bool ok) -> Napi::Value {
          tapBusy_ = false;
          if (!ok) return env.Undefined();
          if (!net_ || closing_) {
            // Closed meanwhile: the interface goes too, off the JS thread.
            std::thread([tap = std::move(*made)] { tap->stop(); }).detach();
            throwSys(EBADF, "connectTap", "vduse", "the device was closed");
          }
          tap_ = std::move(*made);
          net_->connect(tap_);
          return Napi::String::New(env, tap_->name());
        });
  });
}

Napi::Value VduseNetWrap::DisconnectTap(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "VduseNet");
    VduseNet& net = open("disconnectTap");
    if (tapBusy_) throwSys(EBUSY, "disconnectTap", "vduse", "a connectTap() is under way");
    std::shared_ptr<TapPort> tap = std::move(tap_);
    if (tap) net.connect(nullptr);
    tapBusy_ = tap != nullptr;
    return DeviceTask::run(
        env, "vdpa:vduse-net-untap", info.This().As<Napi::Object>(),
        [tap = std::move(tap)]() mutable {
          if (tap) tap->stop();
          tap.reset();  // the last reference: closes the fd (the interface goes) here, not on the JS thread
        },
        [this](Napi::Env env, bool) -> Napi::Value {
          tapBusy_ = false;
          return env.Undefined();
        });
  });
}

Napi::Value VduseNetWrap::SetLink(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "VduseNet");
    const bool up = boolArg(info, 0, "up");
    open("setLink");
    std::shared_ptr<VduseNet> net = net_;
    return DeviceTask::run(
        env, "vdpa:vduse-net-link", info.This().As<Napi::Object>(), [net, up] { net->setLink(up); },
        [](Napi::Env env, bool) -> Napi::Value { return env.Undefined(); });
  });
}

Napi::Value VduseNetWrap::Stats(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "VduseNet");
    return statsObject(info.Env(), net_ ? net_->stats() : finalStats_);
  });
}

Napi::Value VduseNetWrap::Close(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "VduseNet");
    open("close");
    closing_ = true;
    std::shared_ptr<VduseNet> net = net_;
    return DeviceTask::run(
        env, "vdpa:vduse-net-close", info.This().As<Napi::Object>(),
        [net, tap = std::move(tap_)]() mutable {
          if (tap) tap->stop();  // before the NIC goes: see TapPort::stop
          net->connect(nullptr);
          tap.reset();
          net->close();
        },
        [this, net](Napi::Env env, bool ok) -> Napi::Value {
          closing_ = false;
          if (ok) {
            finalStats_ = net->stats();
            net_.reset();
            if (frames_) frames_->tsfn.Release();
            frames_.reset();
          }
          return env.Undefined();
        });
  });
}

}  // namespace vdpa
