#include "ring/packed_driver_queue.h"

#include <cstdio>

#include "common/checks.h"
#include "common/sys_error.h"

namespace vdpa {

namespace {
size_t align16(size_t v) { return (v + 15) & ~size_t{15}; }

std::string hex16(uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}
}  // namespace

size_t PackedDriverQueue::memorySize(const DriverQueueOptions& opts) {
  return align16(PackedRingLayout::forSize(opts.size).totalSize) +
         size_t{opts.size} * opts.indirectMax * sizeof(PackedDesc);
}

PackedDriverQueue::PackedDriverQueue(const DriverQueueOptions& opts, RingMemory mem)
    : num_(opts.size),
      eventIdx_(opts.eventIdx),
      indirectMax_(opts.indirectMax),
      mem_(mem),
      layout_(PackedRingLayout::forSize(opts.size)),
      indirectOffset_(align16(layout_.totalSize)),
      ids_(opts.size),
      numFree_(opts.size) {
  checkQueueSize(num_, kMaxQueueSize, true, "virtqueue", "");
  if (mem.size < memorySize(opts)) throwSys(EINVAL, "virtqueue", "", "ring memory too small");
  desc_ = reinterpret_cast<PackedDesc*>(mem.host + layout_.descOffset);
  driverEvent_ = reinterpret_cast<uint32_t*>(mem.host + layout_.driverOffset);
  deviceEvent_ = reinterpret_cast<const uint32_t*>(mem.host + layout_.deviceOffset);
  freeIds_.reserve(num_);
  for (uint32_t i = num_; i-- > 0;) freeIds_.push_back(static_cast<uint16_t>(i));
  pending_.reserve(num_);
  // Like the split ring: interrupts wanted from the start; with EVENT_IDX, on the first used
  // descriptor (offset 0, wrap counter 1).
  storeEvent(driverEvent_,
             eventIdx_ ? packEvent(kPackedEventDesc, kPackedEventWrap) : packEvent(kPackedEventEnable, 0));
}

bool PackedDriverQueue::addChecked(const Segment* segs, uint32_t count, uint32_t token, uint32_t writable) {
  if (broken_) return false;
  const bool indirect = usesIndirect(count, indirectMax_);
  const uint32_t needed = indirect ? 1 : count;
  if (needed > numFree_) return false;
  // Every chain holds at least one ring descriptor, so a free descriptor means a free id.
  const uint16_t id = freeIds_.back();
  freeIds_.pop_back();

  const uint16_t head = nextAvail_;
  const uint16_t headFlags = static_cast<uint16_t>(flagsFor(availWrap_) | (indirect ? kDescFIndirect : 0) |
                                                   (!indirect && count > 1 ? kDescFNext : 0) |
                                                   (!indirect && segs[0].writable ? kDescFWrite : 0));
  if (indirect) {
    const size_t tableOffset = indirectOffset_ + size_t{id} * indirectMax_ * sizeof(PackedDesc);
    auto* table = reinterpret_cast<PackedDesc*>(mem_.host + tableOffset);
    for (uint32_t i = 0; i < count; i++) {
      // Inside a table only WRITE may be set; entries are consumed in order.
      table[i] = PackedDesc{segs[i].addr, segs[i].len, 0, static_cast<uint16_t>(segs[i].writable ? kDescFWrite : 0)};
    }
    desc_[head].addr = mem_.iova + tableOffset;
    desc_[head].len = count * static_cast<uint32_t>(sizeof(PackedDesc));
    desc_[head].id = id;
  } else {
    // The head's flags are written last, at publish(); the rest of the chain is ready before that.
    uint16_t pos = head;
    bool wrap = availWrap_;
    for (uint32_t i = 0; i < count; i++) {
      desc_[pos].addr = segs[i].addr;
      desc_[pos].len = segs[i].len;
      desc_[pos].id = id;  // the spec puts it in the last descriptor; some devices read the first
      if (i > 0)
        storeRelaxed(&desc_[pos].flags, static_cast<uint16_t>(flagsFor(wrap) | (segs[i].writable ? kDescFWrite : 0) |
                                                              (i + 1 < count ? kDescFNext : 0)));
      if (++pos == num_) {
        pos = 0;
        wrap = !wrap;
      }
    }
  }
  uint32_t next = uint32_t{nextAvail_} + needed;
  if (next >= num_) {
    next -= num_;
    availWrap_ = !availWrap_;
  }
  nextAvail_ = static_cast<uint16_t>(next);
  pending_.push_back(PendingHead{head, headFlags, id});
  ids_[id] = IdInfo{token, writable, static_cast<uint16_t>(needed), IdState::kAdded};
  numFree_ = static_cast<uint16_t>(numFree_ - needed);
  inFlight_++;
  return true;
}

bool PackedDriverQueue::publish() {
  if (pending_.empty()) return false;
  // Later heads first: the device cannot reach them before the first one, whose release store then
  // makes the whole batch visible at once.
  for (size_t i = pending_.size(); i-- > 0;) {
    ids_[pending_[i].id].state = IdState::kPublished;
    storeRelease(&desc_[pending_[i].pos].flags, pending_[i].flags);
  }
  pending_.clear();
  const uint32_t oldPos = lapPosition(num_, publishedPos_, publishedWrap_);
  const uint32_t newPos = lapPosition(num_, nextAvail_, availWrap_);
  publishedPos_ = nextAvail_;
  publishedWrap_ = availWrap_;
  // Our flag stores must be visible before we read the device's suppression state (see split).
  fullFence();
  return packedEventWanted(loadEvent(deviceEvent_), eventIdx_, num_, oldPos, newPos);
}

void PackedDriverQueue::markBroken(std::string reason) {
  broken_ = true;
  brokenReason_ = std::move(reason);
}

uint32_t PackedDriverQueue::publishedOutstanding() const {
  const uint32_t laps = 2u * num_;
  return (lapPosition(num_, publishedPos_, publishedWrap_) + laps - lapPosition(num_, lastUsed_, usedWrap_)) % laps;
}

bool PackedDriverQueue::deviceWroteNextSlot() const {
  const uint16_t flags = loadAcquire(&desc_[lastUsed_].flags);
  const bool avail = (flags & kPackedDescFAvail) != 0, used = (flags & kPackedDescFUsed) != 0;
  if (avail == usedWrap_ && used == usedWrap_) return true;  // a used descriptor of this lap
  // Anything but our own available descriptor where one is outstanding fits no lap.
  return publishedOutstanding() > 0 && !(avail == usedWrap_ && used != usedWrap_);
}

size_t PackedDriverQueue::drain(Completion* out, size_t max) {
  if (broken_) return 0;
  size_t n = 0;
  while (n < max) {
    PackedDesc& d = desc_[lastUsed_];
    // Acquire: id and len written by the device are visible once its flags are.
    const uint16_t flags = loadAcquire(&d.flags);
    const bool avail = (flags & kPackedDescFAvail) != 0, used = (flags & kPackedDescFUsed) != 0;
    const uint32_t outstanding = publishedOutstanding();
    auto where = [this] {
      return "descriptor " + std::to_string(lastUsed_) + " (wrap counter " + std::to_string(usedWrap_ ? 1 : 0) + ")";
    };
    if (avail != usedWrap_ || used != usedWrap_) {
      // Not used. Where requests are outstanding this slot holds our own available descriptor:
      // avail = wrap, used = !wrap. Anything else was written by the device and fits no lap.
      if (outstanding > 0 && !(avail == usedWrap_ && used != usedWrap_))
        markBroken("device wrote flags " + hex16(flags) + " to " + where() +
                   ", which match neither an available nor a used descriptor of this lap");
      break;
    }
    if (outstanding == 0) {
      markBroken("device marked " + where() + " used with no request outstanding");
      break;
    }
    // Read each field once: the device could change it between a check and a use.
    const uint16_t id = __atomic_load_n(&d.id, __ATOMIC_RELAXED);
    const uint32_t len = __atomic_load_n(&d.len, __ATOMIC_RELAXED);
    if (id >= num_ || ids_[id].state != IdState::kPublished) {
      markBroken("device returned used id " + std::to_string(id) +
                 (id >= num_ ? " beyond the queue size " + std::to_string(num_) : " that is not in flight"));
      break;
    }
    IdInfo& info = ids_[id];
    if (len > info.writableBytes) {
      markBroken("device reported " + std::to_string(len) + " bytes written into a chain with only " +
                 std::to_string(info.writableBytes) + " writable bytes");
      break;
    }
    if (info.descCount > outstanding) {  // cannot happen with a consistent ring; never trust one
      markBroken("device used id " + std::to_string(id) + " of " + std::to_string(info.descCount) +
                 " descriptors with only " + std::to_string(outstanding) + " outstanding");
      break;
    }
    out[n++] = Completion{info.token, len};
    uint32_t next = uint32_t{lastUsed_} + info.descCount;
    if (next >= num_) {
      next -= num_;
      usedWrap_ = !usedWrap_;
    }
    lastUsed_ = static_cast<uint16_t>(next);
    numFree_ = static_cast<uint16_t>(numFree_ + info.descCount);
    info.state = IdState::kFree;
    freeIds_.push_back(id);
    inFlight_--;
  }
  return n;
}

bool PackedDriverQueue::enableInterrupts() {
  storeEvent(driverEvent_, eventIdx_ ? packEvent(kPackedEventDesc,
                                                 static_cast<uint16_t>(lastUsed_ | (usedWrap_ ? kPackedEventWrap : 0)))
                                     : packEvent(kPackedEventEnable, 0));
  // The device may have written more between our last read and the store above. Flags that fit no
  // lap count too: the device saw no reason to interrupt for them, so only drain() would notice.
  fullFence();
  return !broken_ && deviceWroteNextSlot();
}

std::vector<uint32_t> PackedDriverQueue::abandonInFlight() {
  std::vector<uint32_t> tokens;
  tokens.reserve(inFlight_);
  for (auto& info : ids_) {
    if (info.state != IdState::kFree) {
      tokens.push_back(info.token);
      info.state = IdState::kFree;
    }
  }
  // Chains never published stay invisible; the queue needs a reset before it is used again.
  pending_.clear();
  inFlight_ = 0;
  return tokens;
}

}  // namespace vdpa
