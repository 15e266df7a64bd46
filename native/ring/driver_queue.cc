#include "ring/driver_queue.h"

#include "common/sys_error.h"

namespace vdpa {

uint32_t checkChain(const Segment* segs, uint32_t count, uint16_t queueSize, uint16_t indirectMax) {
  if (count == 0) throwSys(EINVAL, "virtqueue_add", "", "a chain needs at least one buffer");
  uint64_t writable = 0;
  bool seenWritable = false;
  for (uint32_t i = 0; i < count; i++) {
    if (segs[i].len == 0) throwSys(EINVAL, "virtqueue_add", "", "zero-length buffer in chain");
    if (segs[i].writable) {
      seenWritable = true;
      writable += segs[i].len;
    } else if (seenWritable) {
      throwSys(EINVAL, "virtqueue_add", "", "device-readable buffers must come before device-writable ones");
    }
  }
  if (writable > UINT32_MAX) throwSys(E2BIG, "virtqueue_add", "", "chain writes more than 4 GiB");
  if (!usesIndirect(count, indirectMax) && count > queueSize)
    throwSys(
        E2BIG, "virtqueue_add", "",
        "chain of " + std::to_string(count) + " buffers is longer than the queue (" + std::to_string(queueSize) + ")");
  return static_cast<uint32_t>(writable);
}

}  // namespace vdpa
