// The testing addon (vdpa_testing.node, never shipped): ring tests and benchmarks load it. Each
// testing unit exports its bindings through one register function, called from testing_addon.cc.
#pragma once

#include <napi.h>

namespace vdpa {

// RingLoopback: a driver-side and a device-side ring sharing one region, for ring tests.
void registerRingLoopback(Napi::Env env, Napi::Object exports);
// benchMockBlk(depth, ops, write, capacity): the C++ mock:blk loop the blk benchmark compares with.
void registerBlkLoop(Napi::Env env, Napi::Object exports);
// needEvent(event, new, old): the virtio event-index rule, for ring tests.
void registerRingRules(Napi::Env env, Napi::Object exports);
// virtioPciBringUp(options): the virtio-pci modern unit driven against a fake register window.
void registerVirtioPciTesting(Napi::Env env, Napi::Object exports);

}  // namespace vdpa
