// A page-aligned, populated, shared anonymous mapping: the only kind of memory a device ever sees.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vdpa {

class MemoryRegion {
 public:
  // Maps at least `size` bytes (rounded up to the page size in use). With `wantHugePages` a 2 MiB
  // hugetlb mapping is tried first; when the system has none, ordinary pages are used.
  MemoryRegion(size_t size, bool wantHugePages);
  ~MemoryRegion();
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool hugePages() const { return hugePages_; }
  size_t pageSize() const { return hugePages_ ? kHugePageSize : systemPageSize(); }

  // True when [offset, offset+len) lies inside the region (overflow-safe).
  bool contains(uint64_t offset, uint64_t len) const { return offset <= size_ && len <= size_ - offset; }

  static constexpr size_t kHugePageSize = 2u << 20;
  static size_t systemPageSize();

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool hugePages_ = false;
};

}  // namespace vdpa
