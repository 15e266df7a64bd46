#include "ring/split_driver_queue.h"

#include <cstring>

#include "common/checks.h"
#include "common/sys_error.h"

namespace vdpa {

namespace {
size_t align16(size_t v) { return (v + 15) & ~size_t{15}; }
}  // namespace

size_t SplitDriverQueue::memorySize(const DriverQueueOptions& opts) {
  size_t ring = align16(SplitRingLayout::forSize(opts.size).totalSize);
  return ring + size_t{opts.size} * opts.indirectMax * sizeof(VringDesc);
}

SplitDriverQueue::SplitDriverQueue(const DriverQueueOptions& opts, RingMemory mem)
    : num_(opts.size),
      eventIdx_(opts.eventIdx),
      indirectMax_(opts.indirectMax),
      mem_(mem),
      layout_(SplitRingLayout::forSize(opts.size)),
      indirectOffset_(align16(layout_.totalSize)),
      next_(opts.size),
      heads_(opts.size),
      numFree_(opts.size) {
  checkQueueSize(num_, kMaxQueueSize, false, "virtqueue", "");
  if (mem.size < memorySize(opts)) throwSys(EINVAL, "virtqueue", "", "ring memory too small");
  uint8_t* base = mem.host;
  desc_ = reinterpret_cast<VringDesc*>(base + layout_.descOffset);
  auto* avail = reinterpret_cast<uint16_t*>(base + layout_.availOffset);
  availFlags_ = avail;
  availIdx_ = avail + 1;
  availRing_ = avail + 2;
  usedEvent_ = avail + 2 + num_;
  auto* used = reinterpret_cast<uint16_t*>(base + layout_.usedOffset);
  usedFlags_ = used;
  usedIdx_ = used + 1;
  usedRing_ = reinterpret_cast<const VringUsedElem*>(used + 2);
  availEvent_ = reinterpret_cast<const uint16_t*>(usedRing_ + num_);
  for (uint16_t i = 0; i < num_; i++) next_[i] = static_cast<uint16_t>(i + 1);
  // Without EVENT_IDX, interrupts are wanted from the start (flags = 0); with it, used_event = 0
  // asks for one on the first completion.
  storeRelaxed(availFlags_, 0);
  storeRelaxed(usedEvent_, 0);
}

bool SplitDriverQueue::addChecked(const Segment* segs, uint32_t count, uint32_t token, uint32_t writable) {
  if (broken_) return false;
  const bool indirect = usesIndirect(count, indirectMax_);
  const uint32_t needed = indirect ? 1 : count;
  if (needed > numFree_) return false;

  const uint16_t head = freeHead_;
  if (indirect) {
    VringDesc* table =
        reinterpret_cast<VringDesc*>(mem_.host + indirectOffset_ + size_t{head} * indirectMax_ * sizeof(VringDesc));
    for (uint32_t i = 0; i < count; i++) {
      table[i].addr = segs[i].addr;
      table[i].len = segs[i].len;
      table[i].flags = static_cast<uint16_t>((segs[i].writable ? kDescFWrite : 0) | (i + 1 < count ? kDescFNext : 0));
      table[i].next = static_cast<uint16_t>(i + 1 < count ? i + 1 : 0);
    }
    desc_[head].addr = mem_.iova + indirectOffset_ + uint64_t{head} * indirectMax_ * sizeof(VringDesc);
    desc_[head].len = count * sizeof(VringDesc);
    desc_[head].flags = kDescFIndirect;
    desc_[head].next = 0;
    freeHead_ = next_[head];
  } else {
    uint16_t idx = head, last = head;
    for (uint32_t i = 0; i < count; i++) {
      desc_[idx].addr = segs[i].addr;
      desc_[idx].len = segs[i].len;
      desc_[idx].flags = static_cast<uint16_t>((segs[i].writable ? kDescFWrite : 0) | (i + 1 < count ? kDescFNext : 0));
      desc_[idx].next = next_[idx];
      last = idx;
      idx = next_[idx];
    }
    desc_[last].next = 0;
    freeHead_ = idx;
  }
  numFree_ = static_cast<uint16_t>(numFree_ - needed);
  heads_[head] = HeadState{token, writable, static_cast<uint16_t>(needed), true};
  availRing_[availShadow_ & (num_ - 1)] = head;
  availShadow_++;
  inFlight_++;
  return true;
}

bool SplitDriverQueue::publish() {
  if (availShadow_ == publishedIdx_) return false;
  const uint16_t old = publishedIdx_;
  publishedIdx_ = availShadow_;
  // Release: descriptors and ring entries are visible before the index that publishes them.
  storeRelease(availIdx_, availShadow_);
  // The device may be reading avail_event / flags concurrently: our idx store must be globally
  // visible before we read its suppression state, or both sides may decide "no notification".
  fullFence();
  if (eventIdx_) return vringNeedEvent(loadRelaxed(availEvent_), availShadow_, old);
  return (loadRelaxed(usedFlags_) & kUsedFNoNotify) == 0;
}

void SplitDriverQueue::markBroken(std::string reason) {
  broken_ = true;
  brokenReason_ = std::move(reason);
}

void SplitDriverQueue::freeChain(uint16_t head) {
  HeadState& h = heads_[head];
  uint16_t last = head;
  for (uint16_t i = 1; i < h.descCount; i++) last = next_[last];
  next_[last] = freeHead_;
  freeHead_ = head;
  numFree_ = static_cast<uint16_t>(numFree_ + h.descCount);
  h.inUse = false;
  inFlight_--;
}

size_t SplitDriverQueue::drain(Completion* out, size_t max) {
  if (broken_) return 0;
  size_t n = 0;
  const uint16_t usedIdx = loadAcquire(usedIdx_);
  const uint16_t pending = static_cast<uint16_t>(usedIdx - lastUsed_);
  if (pending > num_ || pending > inFlight_) {
    markBroken("device moved the used index from " + std::to_string(lastUsed_) + " to " + std::to_string(usedIdx) +
               " with only " + std::to_string(inFlight_) + " requests in flight");
    return 0;
  }
  while (n < max && lastUsed_ != usedIdx) {
    const VringUsedElem& e = usedRing_[lastUsed_ & (num_ - 1)];
    // Read each field once: the device could change it between a check and a use.
    const uint32_t id = __atomic_load_n(&e.id, __ATOMIC_RELAXED);
    const uint32_t len = __atomic_load_n(&e.len, __ATOMIC_RELAXED);
    if (id >= num_ || !heads_[id].inUse) {
      markBroken("device returned used id " + std::to_string(id) +
                 (id >= num_ ? " beyond the queue size " + std::to_string(num_) : " that is not in flight"));
      return n;
    }
    if (len > heads_[id].writableBytes) {
      markBroken("device reported " + std::to_string(len) + " bytes written into a chain with only " +
                 std::to_string(heads_[id].writableBytes) + " writable bytes");
      return n;
    }
    out[n++] = Completion{heads_[id].token, len};
    freeChain(static_cast<uint16_t>(id));
    lastUsed_++;
  }
  return n;
}

bool SplitDriverQueue::enableInterrupts() {
  if (eventIdx_) {
    storeRelaxed(usedEvent_, lastUsed_);
  } else {
    storeRelaxed(availFlags_, 0);
  }
  // The device may have completed more between our last read and the store above.
  fullFence();
  return !broken_ && loadAcquire(usedIdx_) != lastUsed_;
}

std::vector<uint32_t> SplitDriverQueue::abandonInFlight() {
  std::vector<uint32_t> tokens;
  tokens.reserve(inFlight_);
  for (uint16_t i = 0; i < num_; i++) {
    if (heads_[i].inUse) {
      tokens.push_back(heads_[i].token);
      heads_[i].inUse = false;
    }
  }
  // Chains added but never published stay invisible: the next publish() must not expose them.
  availShadow_ = publishedIdx_;
  inFlight_ = 0;
  return tokens;
}

}  // namespace vdpa
