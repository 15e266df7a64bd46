// The mock:blk benchmark's reference: the same device driven by a plain C++ loop, no Node at all.
#pragma once

#include <cstdint>

namespace vdpa {

struct BlkLoopResult {
  uint64_t ops;
  uint64_t nanoseconds;
};

// `ops` random 4 KiB reads (or writes) at queue depth `depth` against a fresh mock:blk of `capacity`.
BlkLoopResult runMockBlkLoop(uint32_t depth, uint32_t ops, bool write, uint64_t capacity);

}  // namespace vdpa
