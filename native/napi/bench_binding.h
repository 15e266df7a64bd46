// Exports for benchmarks and ring tests: RingLoopback, the C++ mock:blk loop, the event-index rule.
#pragma once

#include <napi.h>

namespace vdpa {
void registerBench(Napi::Env env, Napi::Object exports);
}
