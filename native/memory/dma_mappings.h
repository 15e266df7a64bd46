// The DMA mappings a transport has made: IOVA range -> host memory. Every transport keeps one, to
// refuse overlapping mappings and unmaps of ranges it never mapped before the kernel sees them; the
// mock also translates device addresses through it. Not thread-safe: callers lock around it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

namespace vdpa {

class DmaMappings {
 public:
  struct Mapping {
    uint8_t* host;
    uint64_t len;
  };

  // True when [iova, iova + len) shares a byte with a live mapping.
  bool overlaps(uint64_t iova, uint64_t len) const;
  // Records a mapping (the caller checked overlaps() first).
  void add(uint64_t iova, void* host, uint64_t len) { map_[iova] = Mapping{static_cast<uint8_t*>(host), len}; }
  // True when exactly [iova, iova + len) was mapped by one add().
  bool contains(uint64_t iova, uint64_t len) const;
  void remove(uint64_t iova) { map_.erase(iova); }
  void clear() { map_.clear(); }

  // The host address of [iova, iova + len), or nullptr unless one mapping holds all of it.
  uint8_t* translate(uint64_t iova, uint64_t len) const;

  bool empty() const { return map_.empty(); }
  size_t size() const { return map_.size(); }
  std::map<uint64_t, Mapping>::const_iterator begin() const { return map_.begin(); }
  std::map<uint64_t, Mapping>::const_iterator end() const { return map_.end(); }

 private:
  std::map<uint64_t, Mapping> map_;  // iova -> mapping
};

}  // namespace vdpa
