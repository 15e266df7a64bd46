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

// What "vdpa dev show NAME" reports.
struct VdpaDeviceAttrs {
  uint32_t deviceId = 0;  // virtio device id
  uint32_t vendorId = 0;
  uint32_t maxVqs = 0;
  uint32_t maxVqSize = 0;
  std::string mgmtBus;  // "" for bus-less management devices such as vduse, "pci" for PCI parents
  std::string mgmtDev;  // "vduse", "0000:03:00.0", ...
};

// VDPA_CMD_DEV_GET for vdpa device `name`; false when the kernel does not answer.
bool vdpaDeviceAttrs(const std::string& name, VdpaDeviceAttrs* out);

}  // namespace vdpa
