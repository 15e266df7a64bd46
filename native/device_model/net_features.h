// virtio-net feature bits and header constants (§5.1.3, §5.1.6) for the device-side NIC models.
#pragma once

#include <cstdint>

#include "ring/virtio_config.h"

namespace vdpa {

constexpr unsigned kNetFeatureCsum = 0, kNetFeatureGuestCsum = 1, kNetFeatureMtu = 3, kNetFeatureMac = 5,
                   kNetFeatureMrgRxbuf = 15, kNetFeatureStatus = 16, kNetFeatureCtrlVq = 17;
constexpr uint32_t kNetHdrBytes = sizeof(VirtioNetHdr);
constexpr uint32_t kEthHeaderBytes = 14, kVlanTagBytes = 4;
constexpr uint32_t kNetConfigStatusOffset = 6;
constexpr uint8_t kNetHdrNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM

}  // namespace vdpa
