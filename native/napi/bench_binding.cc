#include "napi/bench_binding.h"

#include "bench/blk_loop.h"
#include "napi/errors.h"
#include "napi/ring_loopback.h"
#include "ring/virtio_ring.h"
#include "transport/vhost_vdpa/vdpa_netlink.h"

namespace vdpa {

namespace {

uint32_t num(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throwTypeError(info.Env(), "expected a number");
  return info[i].As<Napi::Number>().Uint32Value();
}

Napi::Value BenchMockBlk(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const BlkLoopResult r = runMockBlkLoop(num(info, 0), num(info, 1), info[2].ToBoolean(),
                                           static_cast<uint64_t>(info[3].As<Napi::Number>().DoubleValue()));
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("ops", static_cast<double>(r.ops));
    o.Set("nanoseconds", static_cast<double>(r.nanoseconds));
    return o;
  });
}

Napi::Value NeedEvent(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    return Napi::Boolean::New(info.Env(),
                              vringNeedEvent(static_cast<uint16_t>(num(info, 0)), static_cast<uint16_t>(num(info, 1)),
                                             static_cast<uint16_t>(num(info, 2))));
  });
}

// vdpaDeviceInfo(name): what the kernel's vdpa netlink family says of vdpa device `name`.
Napi::Value VdpaDeviceInfo(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throwTypeError(env, "name must be a string");
    VdpaDeviceAttrs a;
    if (!vdpaDeviceAttrs(info[0].As<Napi::String>().Utf8Value(), &a)) return env.Undefined();
    Napi::Object o = Napi::Object::New(env);
    o.Set("deviceId", a.deviceId);
    o.Set("vendorId", a.vendorId);
    o.Set("maxVqs", a.maxVqs);
    o.Set("maxVqSize", a.maxVqSize);
    o.Set("mgmtDev", a.mgmtBus.empty() ? a.mgmtDev : a.mgmtBus + "/" + a.mgmtDev);
    return o;
  });
}

}  // namespace

void registerBench(Napi::Env env, Napi::Object exports) {
  exports.Set("RingLoopback", RingLoopback::define(env));
  exports.Set("benchMockBlk", Napi::Function::New(env, BenchMockBlk, "benchMockBlk"));
  exports.Set("needEvent", Napi::Function::New(env, NeedEvent, "needEvent"));
  exports.Set("vdpaDeviceInfo", Napi::Function::New(env, VdpaDeviceInfo, "vdpaDeviceInfo"));
}

}  // namespace vdpa
