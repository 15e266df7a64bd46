#include "ring/split_device_queue.h"

#include "common/sys_error.h"

namespace vdpa {

SplitDeviceQueue::SplitDeviceQueue(uint16_t num, uint64_t descIova, uint64_t availIova, uint64_t usedIova,
                                   bool eventIdx, GuestMemory& mem)
    : num_(num), eventIdx_(eventIdx), mem_(mem) {
  if (num == 0 || (num & (num - 1)) != 0) {
    error_ = "queue size is not a power of two";
    return;
  }
  auto* desc = mem.translate(descIova, 16u * num);
  auto* avail = mem.translate(availIova, 6 + 2u * num);
  auto* used = mem.translate(usedIova, 6 + 8u * num);
  if (!desc || !avail || !used || (descIova & 15) || (availIova & 1) || (usedIova & 3)) {
    error_ = "ring addresses are not inside mapped memory or are misaligned";
    return;
  }
  auto* a = reinterpret_cast<const uint16_t*>(avail);
  availFlags_ = a;
  availIdx_ = a + 1;
  availRing_ = a + 2;
  usedEvent_ = a + 2 + num;
  auto* u = reinterpret_cast<uint16_t*>(used);
  usedFlags_ = u;
  usedIdx_ = u + 1;
  usedRing_ = reinterpret_cast<VringUsedElem*>(u + 2);
  availEvent_ = reinterpret_cast<uint16_t*>(usedRing_ + num);
  // The driver may be re-using memory: start from the indexes it sees.
  lastAvail_ = usedShadow_ = publishedUsed_ = loadAcquire(usedIdx_);
  desc_ = reinterpret_cast<const VringDesc*>(desc);
}

bool SplitDeviceQueue::malformed(std::string why) {
  error_ = std::move(why);
  return false;
}

bool SplitDeviceQueue::walkTable(const VringDesc* table, uint32_t tableLen, uint16_t first, bool indirect,
                                 DeviceChain& chain) {
  uint16_t idx = first;
  // A chain can never have more entries than its table: this bound also ends descriptor loops.
  for (uint32_t steps = 0;; steps++) {
    if (steps >= tableLen) return malformed("descriptor chain is longer than its table (loop?)");
    if (idx >= tableLen) return malformed("descriptor index " + std::to_string(idx) + " out of range");
    const VringDesc d = table[idx];  // one copy: the driver may rewrite it under us
    if (d.flags & kDescFIndirect) {
      if (indirect) return malformed("indirect descriptor inside an indirect table");
      if (steps != 0 || (d.flags & kDescFNext))
        return malformed("indirect descriptor must be the only descriptor of its chain");
      if (d.len == 0 || d.len % sizeof(VringDesc) != 0)
        return malformed("indirect table length " + std::to_string(d.len) + " is not a multiple of 16");
      const uint32_t entries = d.len / sizeof(VringDesc);
      if (entries > 65536u) return malformed("indirect table too long");
      auto* t = reinterpret_cast<const VringDesc*>(mem_.translate(d.addr, d.len));
      if (!t || (d.addr & 15)) return malformed("indirect table outside mapped memory or misaligned");
      return walkTable(t, entries, 0, true, chain);
    }
    if (d.len != 0) {
      uint8_t* p = mem_.translate(d.addr, d.len);
      if (!p) return malformed("buffer at iova " + hex(d.addr) + " is outside mapped memory");
      if (d.flags & kDescFWrite) {
        chain.writable.push_back({p, d.len});
        chain.writableBytes += d.len;
      } else {
        if (!chain.writable.empty()) return malformed("device-readable buffer after a device-writable one");
        chain.readable.push_back({p, d.len});
        chain.readableBytes += d.len;
      }
    }
    if (!(d.flags & kDescFNext)) return true;
    idx = d.next;
  }
}

SplitDeviceQueue::Pop SplitDeviceQueue::pop(DeviceChain& chain) {
  chain.clear();
  if (!desc_) return Pop::kMalformed;
  const uint16_t availIdx = loadAcquire(availIdx_);
  if (availIdx == lastAvail_) return Pop::kEmpty;
  if (static_cast<uint16_t>(availIdx - lastAvail_) > num_) {
    malformed("driver moved the avail index by more than the queue size");
    return Pop::kMalformed;
  }
  const uint16_t head = loadRelaxed(&availRing_[lastAvail_ & (num_ - 1)]);
  lastAvail_++;
  chain.head = head;
  if (head >= num_) {
    malformed("avail ring names descriptor " + std::to_string(head) + " beyond the queue size");
    return Pop::kMalformed;
  }
  return walkTable(desc_, num_, head, false, chain) ? Pop::kChain : Pop::kMalformed;
}

void SplitDeviceQueue::push(uint32_t id, uint32_t len) {
  VringUsedElem& e = usedRing_[usedShadow_ & (num_ - 1)];
  e.id = id;
  e.len = len;
  usedShadow_++;
}

bool SplitDeviceQueue::publish() {
  if (usedShadow_ == publishedUsed_) return false;
  const uint16_t old = publishedUsed_;
  publishedUsed_ = usedShadow_;
  storeRelease(usedIdx_, usedShadow_);
  fullFence();
  if (eventIdx_) return vringNeedEvent(loadRelaxed(usedEvent_), usedShadow_, old);
  return (loadRelaxed(availFlags_) & kAvailFNoInterrupt) == 0;
}

void SplitDeviceQueue::disableNotifications() {
  if (!eventIdx_) storeRelaxed(usedFlags_, kUsedFNoNotify);
  // With EVENT_IDX, leaving avail_event behind lastAvail already suppresses kicks.
}

bool SplitDeviceQueue::enableNotifications() {
  if (eventIdx_)
    storeRelaxed(availEvent_, lastAvail_);
  else
    storeRelaxed(usedFlags_, 0);
  fullFence();
  return loadAcquire(availIdx_) != lastAvail_;
}

void SplitDeviceQueue::corruptUsedIdx(uint16_t delta) { usedShadow_ = static_cast<uint16_t>(usedShadow_ + delta); }

}  // namespace vdpa
