#include "ring/packed_device_queue.h"

#include <cstdio>

#include "common/sys_error.h"

namespace vdpa {

PackedDeviceQueue::PackedDeviceQueue(uint16_t num, uint64_t descIova, uint64_t driverIova, uint64_t deviceIova,
                                     bool eventIdx, GuestMemory& mem)
    : num_(num), eventIdx_(eventIdx), mem_(mem) {
  if (num == 0 || num > kPackedMaxSize) {
    error_ = "packed queue size must be between 1 and 32768";
    return;
  }
  auto* desc = mem.translate(descIova, 16u * size_t{num});
  auto* driver = mem.translate(driverIova, 4);
  auto* device = mem.translate(deviceIova, 4);
  if (!desc || !driver || !device || (descIova & 15) || (driverIova & 3) || (deviceIova & 3)) {
    error_ = "ring addresses are not inside mapped memory or are misaligned";
    return;
  }
  driverEvent_ = reinterpret_cast<const uint32_t*>(driver);
  deviceEvent_ = reinterpret_cast<uint32_t*>(device);
  held_.assign(65536, 0);
  pending_.reserve(num);
  // Like the split ring's avail_event = 0: with EVENT_IDX, a kick for the first chain only.
  storeEvent(deviceEvent_,
             eventIdx_ ? packEvent(kPackedEventDesc, kPackedEventWrap) : packEvent(kPackedEventEnable, 0));
  desc_ = reinterpret_cast<PackedDesc*>(desc);
}

PackedDeviceQueue::Pop PackedDeviceQueue::malformed(std::string why) {
  failed_ = true;
  error_ = std::move(why);
  return Pop::kMalformed;
}

bool PackedDeviceQueue::availableAt(uint16_t pos, bool wrap) const {
  const uint16_t flags = loadAcquire(&desc_[pos].flags);
  return ((flags & kPackedDescFAvail) != 0) == wrap && ((flags & kPackedDescFUsed) != 0) != wrap;
}

bool PackedDeviceQueue::addBuffer(uint64_t addr, uint32_t len, bool writable, DeviceChain& chain) {
  if (len == 0) return true;
  uint8_t* p = mem_.translate(addr, len);
  if (!p) {
    malformed("buffer at iova " + hex(addr) + " is outside mapped memory");
    return false;
  }
  if (writable) {
    chain.writable.push_back({p, len});
    chain.writableBytes += len;
  } else {
    if (!chain.writable.empty()) {
      malformed("device-readable buffer after a device-writable one");
      return false;
    }
    chain.readable.push_back({p, len});
    chain.readableBytes += len;
  }
  return true;
}

bool PackedDeviceQueue::walkIndirect(uint64_t addr, uint32_t len, DeviceChain& chain) {
  if (len == 0 || len % sizeof(PackedDesc) != 0) {
    malformed("indirect table length " + std::to_string(len) + " is not a multiple of 16");
    return false;
  }
  const uint32_t entries = len / sizeof(PackedDesc);
  if (entries > 65536u) {
    malformed("indirect table too long");
    return false;
  }
  auto* table = reinterpret_cast<const PackedDesc*>(mem_.translate(addr, len));
  if (!table || (addr & 15)) {
    malformed("indirect table outside mapped memory or misaligned");
    return false;
  }
  for (uint32_t i = 0; i < entries; i++) {
    const PackedDesc e = table[i];  // one copy: the driver may rewrite it under us
    if (e.flags & kDescFIndirect) {
      malformed("indirect descriptor inside an indirect table");
      return false;
    }
    if (e.flags & ~kDescFWrite) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "0x%04x", e.flags);
      malformed("indirect table entry " + std::to_string(i) + " has flags " + buf + " (only WRITE is allowed)");
      return false;
    }
    if (!addBuffer(e.addr, e.len, (e.flags & kDescFWrite) != 0, chain)) return false;
  }
  return true;
}

PackedDeviceQueue::Pop PackedDeviceQueue::pop(DeviceChain& chain) {
  chain.clear();
  if (!desc_ || failed_) return Pop::kMalformed;
  if (!availableAt(availPos_, availWrap_)) return Pop::kEmpty;
  uint16_t pos = availPos_;
  bool wrap = availWrap_;
  uint32_t count = 0;
  uint16_t id = 0;
  for (;;) {
    // Descriptors are consecutive: a chain ends within one trip around the ring or it is malformed.
    if (count == num_)
      return malformed("descriptor chain is longer than the queue (" + std::to_string(num_) + " descriptors)");
    const PackedDesc& slot = desc_[pos];
    // One read of each field (the head's flags were read with acquire, which orders the rest).
    const uint64_t addr = __atomic_load_n(&slot.addr, __ATOMIC_RELAXED);
    const uint32_t len = __atomic_load_n(&slot.len, __ATOMIC_RELAXED);
    const uint16_t descId = __atomic_load_n(&slot.id, __ATOMIC_RELAXED);
    const uint16_t flags = loadRelaxed(&slot.flags);
    count++;
    if (++pos == num_) {
      pos = 0;
      wrap = !wrap;
    }
    if (flags & kDescFIndirect) {
      if (count != 1 || (flags & kDescFNext))
        return malformed("indirect descriptor must be the only descriptor of its chain");
      if (!walkIndirect(addr, len, chain)) return Pop::kMalformed;
      id = descId;
      break;
    }
    if (!addBuffer(addr, len, (flags & kDescFWrite) != 0, chain)) return Pop::kMalformed;
    if (!(flags & kDescFNext)) {
      id = descId;  // the buffer id lives in the chain's last descriptor
      break;
    }
  }
  if (held_[id] != 0) return malformed("buffer id " + std::to_string(id) + " is already in use by another chain");
  held_[id] = static_cast<uint16_t>(count);
  chain.head = id;
  availPos_ = pos;
  availWrap_ = wrap;
  return Pop::kChain;
}

void PackedDeviceQueue::push(uint32_t id, uint32_t len) {
  if (!desc_) return;
  PackedDesc& d = desc_[usedPos_];
  __atomic_store_n(&d.id, static_cast<uint16_t>(id), __ATOMIC_RELAXED);
  __atomic_store_n(&d.len, len, __ATOMIC_RELAXED);
  // Flags (which make it used) are written at publish().
  pending_.push_back(
      PendingUsed{usedPos_, static_cast<uint16_t>(usedWrap_ ? kPackedDescFAvail | kPackedDescFUsed : 0)});
  uint32_t skip = 1;
  if (id < held_.size() && held_[id] != 0) {
    skip = held_[id];
    held_[id] = 0;
  }
  uint32_t next = uint32_t{usedPos_} + skip;
  if (next >= num_) {
    next -= num_;
    usedWrap_ = !usedWrap_;
  }
  usedPos_ = static_cast<uint16_t>(next);
}

bool PackedDeviceQueue::publish() {
  if (pending_.empty()) return false;
  // Later entries first; the first one's release store then makes the whole batch visible.
  for (size_t i = pending_.size(); i-- > 0;) storeRelease(&desc_[pending_[i].pos].flags, pending_[i].flags);
  pending_.clear();
  const uint32_t oldPos = lapPosition(num_, publishedPos_, publishedWrap_);
  const uint32_t newPos = lapPosition(num_, usedPos_, usedWrap_);
  publishedPos_ = usedPos_;
  publishedWrap_ = usedWrap_;
  fullFence();
  return packedEventWanted(loadEvent(driverEvent_), eventIdx_, num_, oldPos, newPos);
}

void PackedDeviceQueue::disableNotifications() {
  if (deviceEvent_) storeEvent(deviceEvent_, packEvent(kPackedEventDisable, 0));
}

bool PackedDeviceQueue::enableNotifications() {
  if (!desc_) return false;
  storeEvent(deviceEvent_, eventIdx_ ? packEvent(kPackedEventDesc,
                                                 static_cast<uint16_t>(availPos_ | (availWrap_ ? kPackedEventWrap : 0)))
                                     : packEvent(kPackedEventEnable, 0));
  fullFence();
  return !failed_ && availableAt(availPos_, availWrap_);
}

void PackedDeviceQueue::corruptUsedIdx(uint16_t delta) {
  if (num_ == 0) return;
  const uint32_t total = uint32_t{usedPos_} + delta;
  if ((total / num_) & 1) usedWrap_ = !usedWrap_;
  usedPos_ = static_cast<uint16_t>(total % num_);
}

}  // namespace vdpa
