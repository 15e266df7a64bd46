// The mock:blk benchmark's reference: the same device driven by a plain C++ loop, no Node at all.
#pragma once

#include <cstdint>

namespace vdpa {

struct BlkLoopResult {
  uint64_t ops;
  uint64_t nanoseconds;
};

// The loop's queue size: the deepest queue it can keep full.
constexpr uint32_t kBlkLoopQueueSize = 256;
// The loop's request size: the smallest capacity it can run against.
constexpr uint32_t kBlkLoopBlock = 4096;

// `ops` random 4 KiB reads (or writes) at queue depth `depth` (1..kBlkLoopQueueSize) against a fresh
// mock:blk of `capacity` bytes (at least one block).
BlkLoopResult runMockBlkLoop(uint32_t depth, uint32_t ops, bool write, uint64_t capacity);

}  // namespace vdpa
