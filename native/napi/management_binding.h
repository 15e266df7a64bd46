// N-API surface of the vdpa management API: netlink round trips as Promises, run on the libuv
// threadpool (a request may wait for the kernel; the JS thread never does).
#pragma once

#include <napi.h>

namespace vdpa {

// Adds netlinkTransact(request: Uint8Array, timeoutMs: number): Promise<Uint8Array[]> to `exports`.
void registerManagement(Napi::Env env, Napi::Object exports);

}  // namespace vdpa
