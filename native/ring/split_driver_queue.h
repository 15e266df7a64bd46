// Split virtqueue, driver side. Every fact needed to free or validate a chain is kept in private
// arrays, never read back from ring memory, so a device that scribbles on the ring cannot steer us.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ring/driver_queue.h"
#include "ring/virtio_ring.h"

namespace vdpa {

class SplitDriverQueue final : public DriverQueue {
 public:
  // Bytes of ring memory (descriptor table, avail, used, indirect tables) for these options; the
  // memory handed to the constructor must be at least this big, zeroed, and 16-byte aligned.
  static size_t memorySize(const DriverQueueOptions& opts);
  SplitDriverQueue(const DriverQueueOptions& opts, RingMemory mem);

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
  uint64_t driverAreaIova() const override { return mem_.iova + layout_.availOffset; }
  uint64_t deviceAreaIova() const override { return mem_.iova + layout_.usedOffset; }

  uint16_t freeDescriptors() const { return numFree_; }

 private:
  struct HeadState {
    uint32_t token = 0;
    uint32_t writableBytes = 0;
    uint16_t descCount = 0;  // ring descriptors the chain occupies (1 when indirect)
    bool inUse = false;
  };

  void markBroken(std::string reason);
  void freeChain(uint16_t head);

  const uint16_t num_;
  const bool eventIdx_;
  const uint16_t indirectMax_;
  const RingMemory mem_;
  const SplitRingLayout layout_;
  const size_t indirectOffset_;

  VringDesc* desc_;
  uint16_t* availFlags_;
  uint16_t* availIdx_;
  uint16_t* availRing_;
  uint16_t* usedEvent_;
  const uint16_t* usedFlags_;
  const uint16_t* usedIdx_;
  const VringUsedElem* usedRing_;
  const uint16_t* availEvent_;

  std::vector<uint16_t> next_;  // private copy of the free list and chain links
  std::vector<HeadState> heads_;
  uint16_t freeHead_ = 0;
  uint16_t numFree_;
  uint16_t availShadow_ = 0;   // avail idx we have written, not yet necessarily published
  uint16_t publishedIdx_ = 0;  // avail idx at the last publish
  uint16_t lastUsed_ = 0;
  uint32_t inFlight_ = 0;
  bool broken_ = false;
  std::string brokenReason_;
};

}  // namespace vdpa
