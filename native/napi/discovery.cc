#include "napi/discovery.h"

#include "napi/args.h"
#include "napi/errors.h"
#include "transport/vhost_vdpa/vdpa_netlink.h"

namespace vdpa {

namespace {

// vdpaDeviceInfo(name): the attributes of vdpa device `name`, or undefined when there is none.
Napi::Value VdpaDeviceInfo(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    VdpaDeviceAttrs a;
    if (!vdpaDeviceAttrs(stringArg(info, 0, "name"), &a)) return env.Undefined();
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

void registerDiscovery(Napi::Env env, Napi::Object exports) {
  exports.Set("vdpaDeviceInfo", Napi::Function::New(env, VdpaDeviceInfo, "vdpaDeviceInfo"));
}

}  // namespace vdpa
