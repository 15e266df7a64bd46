// The driver side of one virtqueue, independent of ring format (split now, packed beside it) and of
// transport. Pure memory work: no system calls, no N-API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vdpa {

// One buffer of a chain, by device address (IOVA). `writable` = the device writes it.
struct Segment {
  uint64_t addr;
  uint32_t len;
  bool writable;
};

// A chain the device has returned: the caller's token and the bytes the device says it wrote.
struct Completion {
  uint32_t token;
  uint32_t len;
};

// Memory the queue lives in: host view plus the address the device uses for it.
struct RingMemory {
  uint8_t* host;
  uint64_t iova;
  size_t size;
};

struct DriverQueueOptions {
  uint16_t size;         // power of two for split rings
  bool eventIdx;         // VIRTIO_RING_F_EVENT_IDX negotiated
  uint16_t indirectMax;  // entries per indirect table; 0 = no VIRTIO_RING_F_INDIRECT_DESC
};

// Whether a chain of `count` buffers goes into an indirect table (VIRTIO_RING_F_INDIRECT_DESC).
inline bool usesIndirect(uint32_t count, uint16_t indirectMax) {
  return indirectMax != 0 && count > 1 && count <= indirectMax;
}

// The chain rules every ring format shares: at least one buffer, none empty, device-readable before
// device-writable, at most 4 GiB writable, and no longer than the queue unless it goes indirect.
// Throws SysError (EINVAL/E2BIG); returns the bytes the device may write.
uint32_t checkChain(const Segment* segs, uint32_t count, uint16_t queueSize, uint16_t indirectMax);

class DriverQueue {
 public:
  virtual ~DriverQueue() = default;

  virtual uint16_t size() const = 0;
  // Adds one chain (device-readable segments must come before device-writable ones). Returns false
  // when the ring has no room right now; throws SysError(EINVAL/E2BIG) for a chain that never fits.
  bool add(const Segment* segs, uint32_t count, uint32_t token) {
    if (broken()) return false;
    return addChecked(segs, count, token, validate(segs, count));
  }
  // The checks add() makes before it changes anything: throws for a chain add() would refuse;
  // returns the bytes the device may write into it.
  virtual uint32_t validate(const Segment* segs, uint32_t count) const = 0;
  // add() of a chain validate() accepted (`writable` = what it returned), without checking it again.
  virtual bool addChecked(const Segment* segs, uint32_t count, uint32_t token, uint32_t writable) = 0;
  // Makes every chain added since the last call visible; returns whether the device needs a kick.
  virtual bool publish() = 0;
  // Moves up to `max` completed chains to `out`. A device that breaks the ring rules marks the queue
  // broken: nothing past the violation is trusted, and the caller fails what is still in flight.
  virtual size_t drain(Completion* out, size_t max) = 0;
  // Asks for an interrupt on the next completion; true when drain() has work again: completions that
  // arrived meanwhile, or a ring write it will reject (the device may not interrupt for those).
  virtual bool enableInterrupts() = 0;
  virtual bool broken() const = 0;
  virtual const std::string& brokenReason() const = 0;
  virtual uint32_t inFlight() const = 0;
  // Forgets every chain the device still holds and returns their tokens (device reset, broken ring).
  virtual std::vector<uint32_t> abandonInFlight() = 0;

  virtual uint64_t descIova() const = 0;
  virtual uint64_t driverAreaIova() const = 0;  // split: avail ring
  virtual uint64_t deviceAreaIova() const = 0;  // split: used ring
};

}  // namespace vdpa
