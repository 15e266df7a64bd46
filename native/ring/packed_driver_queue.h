// Packed virtqueue (VIRTIO_F_RING_PACKED, virtio 1.x 2.8), driver side, plus the ring layout both
// sides share. As with the split ring, every fact needed to free or validate a chain (buffer id ->
// token, descriptor count, writable bytes) is kept in private arrays and never read back from ring
// memory, so a device that scribbles on the ring cannot steer us.
#pragma once

#include <string>
#include <vector>

#include "common/checks.h"
#include "ring/driver_queue.h"
#include "ring/virtio_ring.h"

namespace vdpa {

// Packed descriptor: the same 16 bytes serve as available descriptor (driver -> device) and used
// descriptor (device -> driver).
struct PackedDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t id;
  uint16_t flags;
};
static_assert(sizeof(PackedDesc) == 16, "packed descriptor is 16 bytes");

// Descriptor flag bits that carry the wrap counters.
constexpr uint16_t kPackedDescFAvail = uint16_t{1} << 7;
constexpr uint16_t kPackedDescFUsed = uint16_t{1} << 15;
// Event suppression structure (4 bytes): le16 off_wrap (offset:15, wrap:1), le16 flags.
constexpr uint16_t kPackedEventEnable = 0;
constexpr uint16_t kPackedEventDisable = 1;
constexpr uint16_t kPackedEventDesc = 2;  // only with VIRTIO_RING_F_EVENT_IDX
constexpr uint16_t kPackedEventWrap = uint16_t{1} << 15;
constexpr uint16_t kPackedMaxSize = kMaxQueueSize;  // offsets are 15 bits

inline uint32_t packEvent(uint16_t flags, uint16_t offWrap) { return uint32_t{offWrap} | (uint32_t{flags} << 16); }
inline uint16_t eventOffWrap(uint32_t v) { return static_cast<uint16_t>(v); }
inline uint16_t eventFlags(uint32_t v) { return static_cast<uint16_t>(v >> 16); }
inline uint32_t loadEvent(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void storeEvent(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

// Ring positions on the lap given by the wrap counter: wrap 1 = laps 0, 2, 4...; wrap 0 = laps 1, 3...
// As one number modulo 2 * num, two positions can be compared like split-ring indexes.
inline uint32_t lapPosition(uint16_t num, uint16_t off, bool wrap) { return wrap ? off : uint32_t{num} + off; }

// Whether the position (off, wrap) named by an event suppression structure lies in [old, new): the
// packed counterpart of the split ring's event-index rule.
inline bool packedNeedEvent(uint16_t num, uint16_t offWrap, uint32_t oldPos, uint32_t newPos) {
  const uint32_t laps = 2u * num;
  const uint32_t event =
      lapPosition(num, static_cast<uint16_t>(offWrap & ~kPackedEventWrap) % num, (offWrap & kPackedEventWrap) != 0);
  return (event + laps - oldPos) % laps < (newPos + laps - oldPos) % laps;
}

// Whether the other side asked to be signalled, given its event suppression word `ev`, now that our
// position moved from oldPos to newPos. DESC without EVENT_IDX is the other side's bug; a signal too
// many is harmless, one too few is not.
inline bool packedEventWanted(uint32_t ev, bool eventIdx, uint16_t num, uint32_t oldPos, uint32_t newPos) {
  switch (eventFlags(ev)) {
    case kPackedEventDisable:
      return false;
    case kPackedEventDesc:
      return !eventIdx || packedNeedEvent(num, eventOffWrap(ev), oldPos, newPos);
    default:
      return true;
  }
}

// Byte offsets inside one allocation: descriptor ring, driver event suppression (driver area),
// device event suppression (device area; own cache line), then the indirect tables.
struct PackedRingLayout {
  size_t descOffset, driverOffset, deviceOffset, totalSize;
  static PackedRingLayout forSize(uint16_t num) {
    PackedRingLayout l{};
    l.descOffset = 0;
    l.driverOffset = (16u * size_t{num} + 63) & ~size_t{63};
    l.deviceOffset = l.driverOffset + 64;
    l.totalSize = l.deviceOffset + 64;
    return l;
  }
};

class PackedDriverQueue final : public DriverQueue {
 public:
  // Bytes of ring memory for these options; the memory handed to the constructor must be at least
  // this big, zeroed, and 16-byte aligned. Sizes 1..32768, not necessarily powers of two.
  static size_t memorySize(const DriverQueueOptions& opts);
  PackedDriverQueue(const DriverQueueOptions& opts, RingMemory mem);

  uint16_t size() const override { return num_; }
  uint32_t validate(const Segment* segs, uint32_t count) const override {
    return checkChain(segs, count, num_, indirectMax_);
  }
  bool addChecked(const Segment* segs, uint32_t count, uint32_t token, uint32_t writable) override;
  bool publish() override;
  size_t drain(Completion* out, size_t max) override;
  bool enableInterrupts() override;
  bool broken() const override { return broken_; }
  const std::string& brokenReason() const override { return brokenReason_; }
  uint32_t inFlight() const override { return inFlight_; }
  std::vector<uint32_t> abandonInFlight() override;

  uint64_t descIova() const override { return mem_.iova + layout_.descOffset; }
  uint64_t driverAreaIova() const override { return mem_.iova + layout_.driverOffset; }
  uint64_t deviceAreaIova() const override { return mem_.iova + layout_.deviceOffset; }

  uint16_t freeDescriptors() const { return numFree_; }

 private:
  enum class IdState : uint8_t { kFree, kAdded, kPublished };
  struct IdInfo {
    uint32_t token = 0;
    uint32_t writableBytes = 0;
    uint16_t descCount = 0;  // ring descriptors the chain occupies (1 when indirect)
    IdState state = IdState::kFree;
  };
  struct PendingHead {
    uint16_t pos, flags, id;
  };

  void markBroken(std::string reason);
  uint16_t flagsFor(bool wrap) const { return wrap ? kPackedDescFAvail : kPackedDescFUsed; }
  // Descriptors made available and not yet returned, from lastUsed to the last publish.
  uint32_t publishedOutstanding() const;
  // Whether drain() has work at lastUsed_: a used descriptor, or flags it will reject.
  bool deviceWroteNextSlot() const;

  const uint16_t num_;
  const bool eventIdx_;
  const uint16_t indirectMax_;
  const RingMemory mem_;
  const PackedRingLayout layout_;
  const size_t indirectOffset_;

  PackedDesc* desc_;
  uint32_t* driverEvent_;        // we write it: when the device should interrupt us
  const uint32_t* deviceEvent_;  // the device writes it: when it wants a kick

  std::vector<IdInfo> ids_;
  std::vector<uint16_t> freeIds_;  // stack of unused buffer ids
  std::vector<PendingHead> pending_;
  uint16_t numFree_;
  uint16_t nextAvail_ = 0;  // next descriptor we fill, with its wrap counter
  bool availWrap_ = true;
  uint16_t publishedPos_ = 0;  // nextAvail at the last publish
  bool publishedWrap_ = true;
  uint16_t lastUsed_ = 0;  // where the device writes its next used descriptor
  bool usedWrap_ = true;
  uint32_t inFlight_ = 0;
  bool broken_ = false;
  std::string brokenReason_;
};

}  // namespace vdpa
