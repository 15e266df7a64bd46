#include "transport/vhost_vdpa/vhost_vdpa_transport.h"

#include <unistd.h>

#include <atomic>

#include "common/checks.h"
#include "common/sys_error.h"
#include "common/syscall.h"
#include "ring/virtio_ring.h"
#include "transport/vhost_vdpa/vhost_vdpa_uapi.h"

namespace vdpa {

namespace {

constexpr uint64_t backendBit(unsigned n) { return uint64_t{1} << n; }

// Backend features this transport uses when the kernel offers them.
constexpr uint64_t kWantedBackendFeatures =
    backendBit(VHOST_BACKEND_F_IOTLB_MSG_V2) | backendBit(VHOST_BACKEND_F_IOTLB_BATCH) |
    backendBit(VHOST_BACKEND_F_IOTLB_ASID) | backendBit(VHOST_BACKEND_F_SUSPEND) | backendBit(VHOST_BACKEND_F_RESUME) |
    backendBit(VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK) | backendBit(VHOST_BACKEND_F_IOTLB_PERSIST);

// How long reset() waits for the device to report status 0.
constexpr int kResetPollMs = 2000;

}  // namespace

// ---------------------------------------------------------------- bring-up

VhostVdpaTransport::VhostVdpaTransport(std::string devicePath) : io_(std::move(devicePath)) {
  const long ps = ::sysconf(_SC_PAGESIZE);
  if (ps > 0) pageSize_ = static_cast<uint64_t>(ps);

  // Ownership first: the kernel refuses IOTLB messages from a non-owner.
  io_.setOwner();

  const uint64_t offered = io_.getBackendFeatures();
  offeredBackendFeatures_ = offered;
  if (!(offered & backendBit(VHOST_BACKEND_F_IOTLB_MSG_V2)))
    throwSys(EOPNOTSUPP, "ioctl(VHOST_GET_BACKEND_FEATURES)", path(),
             "the kernel does not offer VHOST_BACKEND_F_IOTLB_MSG_V2 (needs Linux 5.7 or newer)");
  const uint64_t negotiated = offered & kWantedBackendFeatures;
  io_.setBackendFeatures(negotiated);
  backendFeatures_ = negotiated;

  IovaRange range{};
  if (io_.getIovaRange(&range) && range.first <= range.last) iovaRange_ = range;

  deviceId_ = io_.getDeviceId();
  deviceFeatures_ = io_.getFeatures();
  configSize_ = io_.getConfigSize();
  const uint32_t nvqs = io_.getVqsCount();
  maxQueues_ = static_cast<uint16_t>(nvqs > 0xffff ? 0xffff : nvqs);
  io_.setQueueCount(maxQueues_);
  maxQueueSize_ = io_.getVringNum();

  configFd_ = makeEventFd();
  io_.setConfigCall(configFd_.get());

  queues_.resize(maxQueues_);
  doorbells_.resize(maxQueues_);
  doorbellProbed_.assign(maxQueues_, false);
}

VhostVdpaTransport::~VhostVdpaTransport() {
  try {
    teardown(false);
  } catch (...) {
    // Nothing more can be done for a device that no longer answers; closing the fd resets it.
  }
  invalidateAll();
}

std::string VhostVdpaTransport::rangeText() const {
  return "[" + hex(iovaRange_.first) + ", " + hex(iovaRange_.last) + "]";
}

VhostVdpaTransport::Queue& VhostVdpaTransport::queueChecked(uint16_t index, const char* what) {
  checkQueueIndex(index, static_cast<uint32_t>(queues_.size()), what, path());
  return queues_[index];
}

// ---------------------------------------------------------------- features, status, config

void VhostVdpaTransport::setDriverFeatures(uint64_t features) {
  io_.setFeatures(features, deviceFeatures_);
  driverFeatures_ = features;
}

uint8_t VhostVdpaTransport::status() { return io_.getStatus(); }

void VhostVdpaTransport::setStatus(uint8_t s) {
  if (s == 0) return reset();
  // A VDUSE device forgets its config callback on every reset (vduse_dev_reset): register it again
  // before DRIVER_OK, or config interrupts (link changes) never reach configFd_.
  if ((s & kStatusDriverOk) && configFd_) io_.setConfigCall(configFd_.get());
  io_.setStatus(s);
  // ENABLE_AFTER_DRIVER_OK: the queues whose enable was deferred start now.
  if (s & kStatusDriverOk)
    for (uint16_t i = 0; i < queues_.size(); i++)
      if (queues_[i].enablePending) enableNow(i);
}

void VhostVdpaTransport::reset() { teardown(true); }

void VhostVdpaTransport::teardown(bool strict) {
  int err = io_.setStatusQuiet(0);
  const char* failed = "ioctl(VHOST_VDPA_SET_STATUS)";
  if (err == 0) {
    // The kernel resets synchronously, but the virtio rule is "write 0, then read until 0".
    err = ETIMEDOUT;
    failed = "ioctl(VHOST_VDPA_GET_STATUS)";
    for (int waited = 0; waited <= kResetPollMs; waited++) {
      uint8_t now = 0xff;
      const int e = io_.getStatusQuiet(&now);
      if (e) {
        err = e;
        break;
      }
      if (now == 0) {
        err = 0;
        break;
      }
      sleepFor(std::chrono::milliseconds(1));
    }
  }

  // The device no longer uses the queues: unbind their eventfds and forget their setup.
  for (uint16_t i = 0; i < queues_.size(); i++) {
    if (queues_[i].bound) io_.unbindVring(i);
    queues_[i] = Queue{};
  }

  if (err && strict)
    throwSys(err, failed, path(),
             err == ETIMEDOUT ? "the device did not report status 0 within " + std::to_string(kResetPollMs) + " ms"
                              : io_.defaultHint(err));
}

void VhostVdpaTransport::readConfig(uint32_t offset, void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize_, "ioctl(VHOST_VDPA_GET_CONFIG)", path());
  if (len == 0) return;  // the kernel rejects empty reads
  io_.getConfig(offset, buf, len);
}

void VhostVdpaTransport::writeConfig(uint32_t offset, const void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize_, "ioctl(VHOST_VDPA_SET_CONFIG)", path());
  if (len == 0) return;
  io_.setConfig(offset, buf, len);
}

// ---------------------------------------------------------------- DMA (IOTLB messages)

void VhostVdpaTransport::mapDma(uint64_t iova, void* host, uint64_t len) {
  static const char* kSys = "write(VHOST_IOTLB_UPDATE)";
  if (len == 0 || host == nullptr) throwSys(EINVAL, kSys, path(), "a DMA mapping needs memory and a length");
  const uint64_t last = iova + len - 1;
  // Checked here because the kernel reports every failed IOTLB update as EFAULT, whatever the cause.
  if (last < iova || iova < iovaRange_.first || last > iovaRange_.last)
    throwSys(EINVAL, kSys, path(),
             "IOVA range [" + hex(iova) + ", " + hex(last) + "] is outside the device's range " + rangeText());
  if (mappings_.overlaps(iova, len))
    throwSys(EEXIST, kSys, path(), "IOVA range [" + hex(iova) + ", " + hex(last) + "] overlaps a live mapping");

  const int err = io_.writeIotlb(VHOST_IOTLB_UPDATE, iova, len, reinterpret_cast<uintptr_t>(host));
  if (err) {
    std::string hint;
    if (err == ENOMEM || err == EFAULT)
      hint = memlockHint(len) +
             ". The kernel reports every failed IOTLB update as EFAULT; the device's IOVA range is " + rangeText();
    else if (err == EINVAL)
      hint = "IOVA [" + hex(iova) + ", " + hex(last) + "] outside the device's range " + rangeText();
    else
      hint = io_.defaultHint(err);
    throwSys(err, kSys, path(), hint);
  }
  mappings_.add(iova, host, len);
}

void VhostVdpaTransport::unmapDma(uint64_t iova, uint64_t len) {
  static const char* kSys = "write(VHOST_IOTLB_INVALIDATE)";
  if (!mappings_.contains(iova, len))
    throwSys(EINVAL, kSys, path(), "no mapping of " + hex(len) + " bytes at IOVA " + hex(iova));
  const int err = io_.writeIotlb(VHOST_IOTLB_INVALIDATE, iova, len, 0);
  if (err) throwSys(err, kSys, path(), io_.defaultHint(err));
  mappings_.remove(iova);
}

void VhostVdpaTransport::beginDmaBatch() {
  if (inBatch_ || !hasBackendFeature(VHOST_BACKEND_F_IOTLB_BATCH)) return;
  const int err = io_.beginIotlbBatch();
  if (err) throwSys(err, "write(VHOST_IOTLB_BATCH_BEGIN)", path(), io_.defaultHint(err));
  inBatch_ = true;
}

void VhostVdpaTransport::endDmaBatch() {
  if (!inBatch_) return;
  inBatch_ = false;
  const int err = io_.endIotlbBatch();
  if (err) throwSys(err, "write(VHOST_IOTLB_BATCH_END)", path(), io_.defaultHint(err));
}

void VhostVdpaTransport::invalidateAll() noexcept {
  // Note: the kernel frees an address space when its last mapping goes, after which an INVALIDATE
  // fails; so only ranges known to be live are invalidated.
  for (const auto& m : mappings_) io_.writeIotlb(VHOST_IOTLB_INVALIDATE, m.first, m.second.len, 0);
  mappings_.clear();
}

// ---------------------------------------------------------------- queues

void VhostVdpaTransport::setupQueue(const QueueAddresses& a, int callFd) {
  static const char* kSys = "ioctl(VHOST_SET_VRING_NUM)";
  Queue& q = queueChecked(a.index, kSys);
  const bool packed = (driverFeatures_ & bit(kFeatureRingPacked)) != 0;
  checkQueueSize(a.size, maxQueueSize_, packed, kSys, path());
  if (!hasBackendFeature(VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK) && (status() & kStatusDriverOk))
    throwSys(EBUSY, kSys, path(),
             "the device is running (DRIVER_OK) and does not offer VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK: set "
             "queues up before start (VDUSE, for one, refuses VHOST_SET_VRING_BASE once running)");
  const unsigned idx = a.index;
  q.bound = true;  // from here on teardown unbinds the eventfds, even if a later step fails

  io_.setVringCall(idx, callFd);
  io_.setVringNum(idx, a.size);
  // Packed rings carry the wrap counters in bit 15 (avail) and bit 31 (used); both start at 1.
  io_.setVringBase(idx, packed ? 0x80008000u : 0u);
  io_.setVringAddr(idx, a.desc, a.driver, a.device);
  UniqueFd kick = makeEventFd();
  io_.setVringKick(idx, kick.get());

  q.kickFd = std::move(kick);
  q.size = a.size;
  q.setUp = true;
  q.enabled = false;
  q.enablePending = false;
  probeDoorbell(a.index);
}

void VhostVdpaTransport::probeDoorbell(uint16_t index) {
  if (doorbellProbed_[index]) return;
  doorbellProbed_[index] = true;
  doorbells_[index] = io_.mapDoorbell(index, pageSize_);
}

void VhostVdpaTransport::enableNow(uint16_t index) {
  io_.setVringEnable(index);
  queues_[index].enabled = true;
  queues_[index].enablePending = false;
}

void VhostVdpaTransport::enableQueue(uint16_t index) {
  static const char* kSys = "ioctl(VHOST_VDPA_SET_VRING_ENABLE)";
  Queue& q = queueChecked(index, kSys);
  if (!q.setUp) throwSys(EINVAL, kSys, path(), "queue not set up");
  if (q.enabled || q.enablePending) return;
  const bool running = status() & kStatusDriverOk;
  if (hasBackendFeature(VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK)) {
    if (running)
      enableNow(index);
    else
      q.enablePending = true;
    return;
  }
  if (running)
    throwSys(EBUSY, kSys, path(),
             "this device needs its queues enabled before DRIVER_OK (it does not offer "
             "VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK); reset and set the queues up again");
  enableNow(index);
}

void VhostVdpaTransport::notify(uint16_t index) {
  if (index >= queues_.size() || !queues_[index].setUp) return;
  if (doorbells_[index].valid()) {
    // Ring writes must be visible before the device sees the doorbell.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    doorbells_[index].ring(index);
    return;
  }
  signalEventFd(queues_[index].kickFd.get());
}

// ---------------------------------------------------------------- low-level extras

bool VhostVdpaTransport::canSuspend() { return hasBackendFeature(VHOST_BACKEND_F_SUSPEND); }

void VhostVdpaTransport::suspend() {
  if (!hasBackendFeature(VHOST_BACKEND_F_SUSPEND))
    throwSys(EOPNOTSUPP, "ioctl(VHOST_VDPA_SUSPEND)", path(), "the device does not offer VHOST_BACKEND_F_SUSPEND");
  io_.suspend();
}

void VhostVdpaTransport::resume() {
  if (!hasBackendFeature(VHOST_BACKEND_F_RESUME))
    throwSys(EOPNOTSUPP, "ioctl(VHOST_VDPA_RESUME)", path(), "the device does not offer VHOST_BACKEND_F_RESUME");
  io_.resume();
}

uint32_t VhostVdpaTransport::getVringBase(uint16_t index) {
  queueChecked(index, "ioctl(VHOST_GET_VRING_BASE)");
  return io_.getVringBase(index);
}

uint32_t VhostVdpaTransport::vqGroup(uint16_t index) {
  queueChecked(index, "ioctl(VHOST_VDPA_GET_VRING_GROUP)");
  return io_.getVringGroup(index);
}

uint32_t VhostVdpaTransport::groupCount() { return io_.getGroupNum(); }

uint32_t VhostVdpaTransport::asidCount() { return io_.getAsNum(); }

void VhostVdpaTransport::setGroupAsid(uint32_t group, uint32_t asid) { io_.setGroupAsid(group, asid); }

}  // namespace vdpa
