#include "napi/vhost_wrap.h"

#include <utility>

#include "napi/args.h"
#include "napi/device_wrap.h"
#include "napi/errors.h"
#include "transport/vhost_vdpa/vhost_vdpa_transport.h"

namespace vdpa {

namespace {

// Argument 0 as the index of one of the device's queues.
uint16_t queueIndexArg(const Napi::CallbackInfo& info, VhostVdpaTransport& t) {
  const uint32_t index = u32Arg(info, 0, "index");
  if (index >= t.maxQueues()) throwRangeError(info.Env(), "no such queue");
  return static_cast<uint16_t>(index);
}

}  // namespace

const napi_type_tag VhostWrap::kTag = {0x7664706176686f73ULL, 0x7400000000000005ULL};

Napi::Function VhostWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeVhost",
                     {
                         InstanceMethod<&VhostWrap::Info>("info"),
                         InstanceMethod<&VhostWrap::Suspend>("suspend"),
                         InstanceMethod<&VhostWrap::Resume>("resume"),
                         InstanceMethod<&VhostWrap::VringBase>("vringBase"),
                         InstanceMethod<&VhostWrap::VqGroup>("vqGroup"),
                         InstanceMethod<&VhostWrap::SetGroupAsid>("setGroupAsid"),
                     });
}

VhostWrap::VhostWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VhostWrap>(info) {
  info.This().As<Napi::Object>().TypeTag(&kTag);
}

void VhostWrap::init(std::shared_ptr<VirtioDevice> device) { device_ = std::move(device); }

// Reached anew on every call: the transport goes away when the device closes.
VhostVdpaTransport& VhostWrap::vhost() { return *requireIdle(device_, "vhost").transport().asVhost(); }

Napi::Value VhostWrap::Info(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Vhost");
    VhostVdpaTransport& t = vhost();
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

Napi::Value VhostWrap::Suspend(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Vhost");
    vhost().suspend();
    return info.Env().Undefined();
  });
}

Napi::Value VhostWrap::Resume(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Vhost");
    vhost().resume();
    return info.Env().Undefined();
  });
}

Napi::Value VhostWrap::VringBase(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Vhost");
    VhostVdpaTransport& t = vhost();
    return Napi::Number::New(info.Env(), t.getVringBase(queueIndexArg(info, t)));
  });
}

Napi::Value VhostWrap::VqGroup(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Vhost");
    VhostVdpaTransport& t = vhost();
    return Napi::Number::New(info.Env(), t.vqGroup(queueIndexArg(info, t)));
  });
}

Napi::Value VhostWrap::SetGroupAsid(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Vhost");
    const uint32_t group = u32Arg(info, 0, "group"), asid = u32Arg(info, 1, "asid");
    vhost().setGroupAsid(group, asid);
    return info.Env().Undefined();
  });
}

}  // namespace vdpa
