#include "memory/dma_mappings.h"

#include <iterator>

namespace vdpa {

bool DmaMappings::overlaps(uint64_t iova, uint64_t len) const {
  auto next = map_.lower_bound(iova);  // first mapping starting at or after iova
  if (next != map_.end() && len > 0 && next->first - iova < len) return true;
  if (next == map_.begin()) return false;
  const auto prev = std::prev(next);  // starts before iova
  return iova - prev->first < prev->second.len;
}

bool DmaMappings::contains(uint64_t iova, uint64_t len) const {
  auto it = map_.find(iova);
  return it != map_.end() && it->second.len == len;
}

uint8_t* DmaMappings::translate(uint64_t iova, uint64_t len) const {
  auto it = map_.upper_bound(iova);
  if (it == map_.begin()) return nullptr;
  --it;
  const uint64_t off = iova - it->first;
  if (off >= it->second.len || len > it->second.len - off) return nullptr;
  return it->second.host + off;
}

}  // namespace vdpa
