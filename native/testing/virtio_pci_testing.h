// Test hook for the virtio-pci register logic: a fake modern virtio-pci function (capabilities in a
// fake config space, a common-config register file that behaves like a device) and a binding that
// runs VirtioPciModern's bring-up against it. Built into the testing addon, never the product.
#pragma once

#include <napi.h>

namespace vdpa {

// exports.virtioPciBringUp(options?) -> what the bring-up did (see test/transport/virtio-pci.test.ts).
void registerVirtioPciTesting(Napi::Env env, Napi::Object exports);

}  // namespace vdpa
