// What the vhost-vdpa char device cannot tell: the vhost uAPI has no "vendor id" ioctl, only the
// vdpa generic-netlink family ("vdpa dev show") reports it. These helpers find the vdpa device behind
// a /dev/vhost-vdpa-N node (through sysfs) and ask the kernel over netlink. Best effort: they never
// throw and return false when anything is missing (no sysfs, old kernel, no vdpa family).
#pragma once

#include <cstdint>
#include <string>

namespace vdpa {

// "/dev/vhost-vdpa-0" -> the vdpa bus device name ("v0"), via /sys/dev/char/MAJ:MIN/device.
bool vdpaDeviceName(const std::string& vhostPath, std::string* name);

// VDPA_ATTR_DEV_VENDOR_ID of vdpa device `name`.
bool vdpaVendorId(const std::string& name, uint32_t* vendorId);

}  // namespace vdpa
