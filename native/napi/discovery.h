// Discovery exports: what the kernel's vdpa netlink family says of a vdpa device.
#pragma once

#include <napi.h>

namespace vdpa {
void registerDiscovery(Napi::Env env, Napi::Object exports);
}
