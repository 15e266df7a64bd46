#include "device/virtio_device.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/checks.h"
#include "common/sys_error.h"
#include "common/syscall.h"
#include "ring/packed_driver_queue.h"
#include "ring/split_driver_queue.h"
#include "ring/virtio_ring.h"

namespace vdpa {

namespace {
// Entries per indirect table: enough for the largest request the drivers build.
constexpr uint16_t kIndirectMax = 128;
}  // namespace

SysError VirtQueue::brokenError(const std::string& path) const {
  const std::string syscall = "virtqueue " + std::to_string(index);
  return SysError(EPROTO, syscall, path,
                  "EPROTO: device broke the virtio rules: " + ring->brokenReason() + ", " + syscall + " '" + path + "'",
                  "the device or its driver is faulty; close and reopen it");
}

VirtioDevice::VirtioDevice(std::unique_ptr<Transport> transport)
    : path_(transport->path()),
      transport_(std::move(transport)),
      iova_(transport_->iovaRange().first, transport_->iovaRange().last) {}

VirtioDevice::~VirtioDevice() {
  try {
    close();
  } catch (...) {
    // Teardown of a device that already vanished: nothing more can be done.
  }
}

uint64_t VirtioDevice::negotiate(uint64_t wanted) {
  Transport& t = *transport_;
  t.reset();
  t.setStatus(kStatusAcknowledge);
  t.setStatus(kStatusAcknowledge | kStatusDriver);
  const uint64_t offered = t.deviceFeatures();
  if (!(offered & bit(kFeatureVersion1)))
    throwSys(EOPNOTSUPP, "virtio: VERSION_1", t.path(),
             "the device does not offer VIRTIO_F_VERSION_1; only virtio 1.x devices are supported");
  const uint64_t features = offered & (wanted | bit(kFeatureVersion1) | bit(kFeatureAccessPlatform));
  t.setDriverFeatures(features);
  t.setStatus(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  if (!(t.status() & kStatusFeaturesOk)) {
    t.setStatus(t.status() | kStatusFailed);
    throwSys(EOPNOTSUPP, "virtio: FEATURES_OK", t.path(),
             "the device did not accept the negotiated features (FEATURES_OK stayed clear)");
  }
  features_ = features;
  return features;
}

uint32_t VirtioDevice::HandleSpace::acquire() {
  std::lock_guard<std::mutex> lock(lock_);
  for (uint32_t h = 1; h < users_.size(); h++) {
    if (users_[h] == 0) {
      users_[h] = 1;
      return h;
    }
  }
  users_.push_back(1);
  return static_cast<uint32_t>(users_.size() - 1);
}

bool VirtioDevice::HandleSpace::retain(uint32_t handle) {
  std::lock_guard<std::mutex> lock(lock_);
  if (handle == 0 || handle >= users_.size() || users_[handle] == 0) return false;
  users_[handle]++;
  return true;
}

void VirtioDevice::HandleSpace::release(uint32_t handle) {
  std::lock_guard<std::mutex> lock(lock_);
  if (handle < users_.size() && users_[handle] > 0) users_[handle]--;
}

uint32_t VirtioDevice::addRegion(std::shared_ptr<MemoryRegion> region) {
  if (closed_) throwSys(EBADF, "region", path_, "the device is closed");
  // Reuse a free handle so long-running programs do not grow the table.
  const uint32_t handle = handles_->acquire();
  try {
    registerAt(handle, std::move(region));
  } catch (...) {
    handles_->release(handle);
    throw;
  }
  return handle;
}

void VirtioDevice::registerAt(uint32_t handle, std::shared_ptr<MemoryRegion> region) {
  const uint64_t align = std::max<uint64_t>(transport_->iovaAlignment(), region->pageSize());
  const uint64_t iova = iova_.allocate(region->size(), align);
  const bool defer = deferDmaUpdates();
  if (!defer) {
    try {
      std::lock_guard<std::mutex> lock(dmaLock_);
      transport_->mapDma(iova, region->data(), region->size());
    } catch (...) {
      iova_.release(iova, region->size());
      throw;
    }
  }
  if (regions_.size() <= handle) regions_.resize(handle + 1);
  if (defer) dmaJobs_.push_back(DmaJob{true, handle, iova, region, nullptr});
  regions_[handle] = Registered{std::move(region), iova, defer ? MapState::kQueued : MapState::kMapped};
}

void VirtioDevice::shareHandles(VirtioDevice& from) {
  for (size_t h = 1; h < regions_.size(); h++)
    if (regions_[h].region) throwSys(EBUSY, "hand-over", path_, "the device has regions of its own already");
  handles_ = from.handles_;
}

void VirtioDevice::adoptRegion(uint32_t handle, std::shared_ptr<MemoryRegion> region) {
  if (closed_) throwSys(EBADF, "region", path_, "the device is closed");
  if (hasRegion(handle) || !handles_->retain(handle))
    throwSys(EINVAL, "hand-over", path_, "the region's handle is not shared with this device");
  try {
    registerAt(handle, std::move(region));
  } catch (...) {
    handles_->release(handle);
    throw;
  }
}

void VirtioDevice::setBusy(bool busy) {
  busy_ = busy;
  if (busy) return;
  for (uint32_t handle : std::exchange(deferredRemovals_, {})) {
    try {
      removeRegion(handle);
    } catch (...) {
      // Asked for by a finalizer, which cannot report; the mapping goes with the device at the latest.
    }
  }
}

void VirtioDevice::removeRegion(uint32_t handle) {
  if (handle == 0 || handle >= regions_.size() || !regions_[handle].region) return;
  if (busy_ || closing_.load()) {
    // A threadpool step may be using the region table and the transport right now.
    deferredRemovals_.push_back(handle);
    return;
  }
  Registered r = std::move(regions_[handle]);
  regions_[handle] = Registered{};
  handles_->release(handle);
  if (closed_) return iova_.release(r.iova, r.region->size());
  if (!deferDmaUpdates()) {
    iova_.release(r.iova, r.region->size());
    std::lock_guard<std::mutex> lock(dmaLock_);
    return transport_->unmapDma(r.iova, r.region->size());
  }
  // A mapping still queued, or refused, is simply dropped; otherwise the unmap queues behind it, and
  // the IOVA stays reserved until the unmap took (finishDmaJobs).
  if (r.state == MapState::kQueued)
    dmaJobs_.erase(
        std::find_if(dmaJobs_.begin(), dmaJobs_.end(), [&](const DmaJob& j) { return j.map && j.handle == handle; }));
  if (r.state == MapState::kQueued || r.state == MapState::kFailed) return iova_.release(r.iova, r.region->size());
  dmaJobs_.push_back(DmaJob{false, handle, r.iova, std::move(r.region), nullptr});
}

std::vector<VirtioDevice::DmaJob> VirtioDevice::takeDmaJobs() {
  for (const DmaJob& j : dmaJobs_)
    if (j.map) regions_[j.handle].state = MapState::kApplying;
  return std::move(dmaJobs_);
}

void VirtioDevice::applyDmaJobs(std::vector<DmaJob>& jobs) {
  std::lock_guard<std::mutex> lock(dmaLock_);
  if (!transport_ || jobs.empty()) return;  // closed meanwhile
  Transport& t = *transport_;
  std::exception_ptr batchError;
  try {
    t.beginDmaBatch();
  } catch (...) {
    batchError = std::current_exception();
  }
  for (DmaJob& j : jobs) {
    if (batchError) {
      j.error = batchError;
      continue;
    }
    try {
      if (j.map)
        t.mapDma(j.iova, j.region->data(), j.region->size());
      else
        t.unmapDma(j.iova, j.region->size());
    } catch (...) {
      j.error = std::current_exception();
    }
  }
  try {
    t.endDmaBatch();
  } catch (...) {
    // The updates were written; a refused BATCH_END leaves nothing to undo.
  }
}

void VirtioDevice::finishDmaJobs(const std::vector<DmaJob>& jobs) {
  for (const DmaJob& j : jobs) {
    if (!j.map) {
      // A refused unmap keeps its IOVA reserved: the range may still be live in the device.
      if (!j.error || closed_) iova_.release(j.iova, j.region->size());
      continue;
    }
    if (j.handle < regions_.size() && regions_[j.handle].region == j.region) {
      regions_[j.handle].state = j.error ? MapState::kFailed : MapState::kMapped;
      continue;
    }
    // Removed while its mapping was applied: an unmap is queued behind it, which has nothing to do
    // when the mapping was refused.
    if (!j.error) continue;
    auto unmap =
        std::find_if(dmaJobs_.begin(), dmaJobs_.end(), [&](const DmaJob& u) { return !u.map && u.region == j.region; });
    if (unmap != dmaJobs_.end()) dmaJobs_.erase(unmap);
    iova_.release(j.iova, j.region->size());
  }
}

VirtQueue& VirtioDevice::createQueue(uint16_t index, uint16_t size) {
  if (closed_) throwSys(EBADF, "queue", path_, "the device is closed");
  checkQueueIndex(index, transport_->maxQueues(), "queue", transport_->path());
  const bool packed = (features_ & bit(kFeatureRingPacked)) != 0;
  checkQueueSize(size, transport_->maxQueueSize(index), packed, "queue", transport_->path());
  if (queues_.size() <= index) queues_.resize(index + 1);
  if (queues_[index]) throwSys(EBUSY, "queue", transport_->path(), "queue already set up");

  DriverQueueOptions opts{size, (features_ & bit(kFeatureRingEventIdx)) != 0,
                          static_cast<uint16_t>((features_ & bit(kFeatureRingIndirectDesc)) ? kIndirectMax : 0)};
  auto mem = std::make_shared<MemoryRegion>(
      packed ? PackedDriverQueue::memorySize(opts) : SplitDriverQueue::memorySize(opts), false);
  RingMemory ring{mem->data(), 0, mem->size()};
  auto q = std::make_unique<VirtQueue>();
  q->index = index;
  translate(addRegion(mem), 0, mem->size(), &ring.iova);
  if (packed)
    q->ring = std::make_unique<PackedDriverQueue>(opts, ring);
  else
    q->ring = std::make_unique<SplitDriverQueue>(opts, ring);
  q->callFd = makeEventFd();
  transport_->setupQueue(
      QueueAddresses{index, size, q->ring->descIova(), q->ring->driverAreaIova(), q->ring->deviceAreaIova()},
      q->callFd.get());
  queues_[index] = std::move(q);
  return *queues_[index];
}

void VirtioDevice::start() {
  for (auto& q : queues_)
    if (q) transport_->enableQueue(q->index);
  transport_->setStatus(transport_->status() | kStatusDriverOk);
  started_ = true;
}

bool VirtioDevice::awaitedIdle() const {
  for (const auto& q : queues_)
    if (q && q->awaited && q->held.load() > 0) return false;
  return true;
}

void VirtioDevice::closeBegin(const std::vector<uint16_t>& awaited) {
  if (closed_) return;
  closed_ = true;
  for (auto& q : queues_) {
    if (!q) continue;
    q->awaited = std::find(awaited.begin(), awaited.end(), q->index) != awaited.end();
    q->held.store(q->ring->broken() ? 0 : q->ring->inFlight());
  }
  closing_.store(true);
}

void VirtioDevice::closeOnWorker(std::chrono::milliseconds budget) {
  if (closedOnWorker_) return;
  closedOnWorker_ = true;
  {
    std::unique_lock<std::mutex> lock(idleLock_);
    idle_.wait_for(lock, std::min(budget, kQuiesceBudget), [this] { return awaitedIdle(); });
  }
  std::lock_guard<std::mutex> dmaLock(dmaLock_);  // a DMA update on another thread finishes first
  // Reset first: after it the device no longer reads rings or writes buffers, so unmapping is safe.
  try {
    transport_->reset();
  } catch (...) {
    // A device that vanished cannot touch memory either; carry on releasing it.
  }
  for (size_t h = 1; h < regions_.size(); h++) {
    if (!regions_[h].region) continue;
    try {
      transport_->unmapDma(regions_[h].iova, regions_[h].region->size());
    } catch (...) {
      // The mapping dies with the transport's fd anyway.
    }
  }
  // Drop the transport now, not at garbage collection: its fds (an exclusive vhost-vdpa open, a
  // VFIO device) must be free for the next open.
  transport_.reset();
}

void VirtioDevice::closeEnd() {
  closing_.store(false);
  queues_.clear();
  for (uint32_t h = 1; h < regions_.size(); h++)
    if (regions_[h].region) handles_->release(h);
  regions_.resize(1);
  deferredRemovals_.clear();
  dmaJobs_.clear();  // the transport, and every mapping with it, is gone
}

void VirtioDevice::close() {
  closeBegin({});
  closeOnWorker(std::chrono::milliseconds(0));
  closeEnd();
}

}  // namespace vdpa
