#include "memory/iova_allocator.h"

#include <algorithm>

#include "common/sys_error.h"

namespace vdpa {

IovaAllocator::IovaAllocator(uint64_t first, uint64_t last) : first_(first), cursor_(first) {
  // Never hand out IOVA 0: a zero address in a descriptor is almost always a bug worth catching.
  uint64_t start = first == 0 ? 0x1000 : first;
  if (last > start) free_[start] = last - start + 1;  // cannot overflow: start >= 0x1000 or > 0
}

uint64_t IovaAllocator::allocate(uint64_t len, uint64_t align) {
  if (len == 0 || align == 0 || (align & (align - 1)) != 0)
    throwSys(EINVAL, "iova_alloc", "", "IOVA allocation needs a non-zero length and a power-of-two alignment");
  // Next fit: search from where the last allocation ended, then from the bottom.
  for (uint64_t from : {cursor_, first_}) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      const uint64_t start = std::max(it->first, from), end = it->first + (it->second - 1);
      if (start > end) continue;
      const uint64_t aligned = (start + align - 1) & ~(align - 1);
      if (aligned < start || aligned > end || end - aligned < len - 1) continue;
      const uint64_t rangeStart = it->first, rangeSize = it->second;
      free_.erase(it);
      if (aligned > rangeStart) free_[rangeStart] = aligned - rangeStart;
      const uint64_t tail = rangeStart + (rangeSize - 1) - (aligned + len - 1);
      if (tail) free_[aligned + len] = tail;
      cursor_ = aligned + len;
      return aligned;
    }
  }
  throwSys(ENOSPC, "iova_alloc", "", "the device's IOVA window is full: free some buffers");
}

void IovaAllocator::release(uint64_t iova, uint64_t len) {
  if (len == 0) return;
  auto next = free_.lower_bound(iova);
  uint64_t start = iova, size = len;
  if (next != free_.end() && start + size == next->first) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      prev->second += size;
      return;
    }
  }
  free_[start] = size;
}

}  // namespace vdpa
