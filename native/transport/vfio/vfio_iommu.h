// The IOMMU side of VFIO: where a device fd comes from and how DMA mappings reach the IOMMU.
//
// VfioIommu is the small seam a future cdev + iommufd backend slots into (/dev/vfio/devices/vfioN
// bound to an iommufd IOAS); today the only implementation is the legacy container/group API with
// the TYPE1v2 IOMMU driver. One container serves every device of the process (a process-wide
// registry holds it weakly), so devices in different groups share one IOVA space; each device leases
// its own disjoint IOVA window from it so their allocators never collide.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "transport/transport.h"

namespace vdpa {

class VfioIommu {
 public:
  virtual ~VfioIommu() = default;

  // Opens the VFIO device fd for PCI function `bdf`, attached to this IOMMU context. `owner` is what
  // errors name ("vfio:0000:00:03.0"). The returned handle keeps the group (or whatever the backend
  // needs) alive for as long as the device fd is in use.
  struct DeviceHandle {
    UniqueFd fd;
    std::shared_ptr<void> keepAlive;
  };
  virtual DeviceHandle openDevice(const std::string& bdf, const std::string& owner) = 0;

  // Usable IOVA ranges (the IOMMU's aperture minus reserved regions such as the MSI window).
  virtual const std::vector<IovaRange>& iovaRanges() const = 0;
  // Bitmap of supported IOMMU page sizes; the lowest set bit is the mapping granularity.
  virtual uint64_t pageSizes() const = 0;

  // Both return 0 or the errno; callers add the context to errors.
  virtual int map(uint64_t iova, void* host, uint64_t len) = 0;
  virtual int unmap(uint64_t iova, uint64_t len) = 0;

  // A disjoint slice of the IOVA space for one device; released when the device goes away. Devices
  // open and close on any thread, so the leases have a lock of their own.
  IovaRange leaseWindow(const std::string& owner);
  void releaseWindow(const IovaRange& w);

 protected:
  void computeWindows();

 private:
  std::mutex windowMu_;
  std::vector<IovaRange> windows_;
  std::vector<bool> leased_;
};

// The process-wide TYPE1v2 container: created on first use, shared while any device holds it.
std::shared_ptr<VfioIommu> sharedVfioContainer(const std::string& owner);

}  // namespace vdpa
