// Hands out I/O virtual address ranges inside the window a device's IOMMU accepts.
#pragma once

#include <cstdint>
#include <map>

namespace vdpa {

class IovaAllocator {
 public:
  // Usable addresses are [first, last] inclusive, as the kernel reports them.
  IovaAllocator(uint64_t first, uint64_t last);

  // Next-fit allocation of `len` bytes aligned to `align` (a power of two): a freed range is handed
  // out again only after the rest of the window has been used. A device-side cache that has not yet
  // dropped an old IOVA mapping (a VDUSE daemon processes IOTLB updates asynchronously) then never
  // sees that IOVA reused for other memory. Throws ENOSPC when the window is exhausted.
  uint64_t allocate(uint64_t len, uint64_t align);
  // Returns a range obtained from allocate(); adjacent free ranges are merged.
  void release(uint64_t iova, uint64_t len);

 private:
  uint64_t first_;
  std::map<uint64_t, uint64_t> free_;  // start -> length
  uint64_t cursor_;                    // where the next search starts
};

}  // namespace vdpa
