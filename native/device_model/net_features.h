// virtio-net feature bits and header constants (§5.1.3, §5.1.6) for the device-side NIC models.
#pragma once

#include <cstdint>

#include "ring/virtio_config.h"

namespace vdpa {

constexpr unsigned kNetFeatureMtu = 3, kNetFeatureMac = 5, kNetFeatureMrgRxbuf = 15, kNetFeatureStatus = 16,
                   kNetFeatureCtrlVq = 17;
constexpr uint32_t kNetHdrBytes = sizeof(VirtioNetHdr);
constexpr uint32_t kEthHeaderBytes = 14, kVlanTagBytes = 4;
constexpr uint32_t kNetConfigStatusOffset = 6;

}  // namespace vdpa
