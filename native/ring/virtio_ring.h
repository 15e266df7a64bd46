// Virtio 1.x split-ring layout and the constants both ring sides share. Little-endian only (virtio 1.x
// is little-endian and this library targets x86-64/arm64 Linux), so fields are plain integers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace vdpa {

// Descriptor flags.
constexpr uint16_t kDescFNext = 1;
constexpr uint16_t kDescFWrite = 2;
constexpr uint16_t kDescFIndirect = 4;
// Avail/used ring flags (used when EVENT_IDX was not negotiated).
constexpr uint16_t kAvailFNoInterrupt = 1;
constexpr uint16_t kUsedFNoNotify = 1;

// Feature bits shared by every device type.
constexpr unsigned kFeatureRingIndirectDesc = 28;
constexpr unsigned kFeatureRingEventIdx = 29;
constexpr unsigned kFeatureVersion1 = 32;
constexpr unsigned kFeatureAccessPlatform = 33;
constexpr unsigned kFeatureRingPacked = 34;

// Device status bits.
constexpr uint8_t kStatusAcknowledge = 1;
constexpr uint8_t kStatusDriver = 2;
constexpr uint8_t kStatusDriverOk = 4;
constexpr uint8_t kStatusFeaturesOk = 8;
constexpr uint8_t kStatusNeedsReset = 64;
constexpr uint8_t kStatusFailed = 128;

constexpr uint64_t bit(unsigned n) { return uint64_t{1} << n; }

struct VringDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(VringDesc) == 16, "virtio descriptor is 16 bytes");

struct VringUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(VringUsedElem) == 8, "virtio used element is 8 bytes");

// Byte offsets of the three split-ring parts inside one contiguous allocation.
struct SplitRingLayout {
  size_t descOffset, availOffset, usedOffset, totalSize;
  static SplitRingLayout forSize(uint16_t num) {
    SplitRingLayout l{};
    l.descOffset = 0;
    l.availOffset = 16u * num;
    // avail: flags, idx, ring[num], used_event
    size_t availEnd = l.availOffset + 6 + 2u * num;
    l.usedOffset = (availEnd + 3) & ~size_t{3};
    // used: flags, idx, ring[num], avail_event
    l.totalSize = l.usedOffset + 6 + 8u * num;
    return l;
  }
};

// The event-index rule (virtio 1.x 2.7.10): notify when new_idx has moved past event_idx since old_idx.
inline bool vringNeedEvent(uint16_t eventIdx, uint16_t newIdx, uint16_t oldIdx) {
  return static_cast<uint16_t>(newIdx - eventIdx - 1) < static_cast<uint16_t>(newIdx - oldIdx);
}

// Accessors for ring fields that the other side reads or writes concurrently. Acquire/release order
// the index against the ring entries it publishes; full fences are used where the protocol needs
// a store to be visible before a following load (event-index checks).
inline uint16_t loadAcquire(const uint16_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline uint16_t loadRelaxed(const uint16_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void storeRelease(uint16_t* p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline void storeRelaxed(uint16_t* p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline void fullFence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

}  // namespace vdpa
