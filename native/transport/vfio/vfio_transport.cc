#include "transport/vfio/vfio_transport.h"

#include <poll.h>
#include <unistd.h>

#include <cctype>
#include <map>
#include <mutex>
#include <utility>

#include "common/checks.h"
#include "common/sys_error.h"
#include "ring/virtio_ring.h"
#include "transport/virtio_pci/virtio_pci_regs.h"

namespace vdpa {

namespace {

// "vfio:0000:00:03.0" or "vfio:00:03.0" -> "0000:00:03.0"; empty when malformed.
std::string parseBdf(const std::string& spec) {
  std::string s = spec.rfind("vfio:", 0) == 0 ? spec.substr(5) : spec;
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s.size() == 7) s = "0000:" + s;
  // dddd:bb:ss.f
  if (s.size() != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.') return "";
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return "";
  if (s[11] < '0' || s[11] > '7') return "";
  return s;
}

// Live transports by PCI address. A device dropped without close() keeps its transport until garbage
// collection runs its finalizer; a new open of the same function retires such an idle predecessor,
// so that its late destructor cannot reset the function under the new owner.
std::mutex gLiveMu;
std::map<std::string, VfioTransport*> gLive;

}  // namespace

// ---------------------------------------------------------------- bring-up

VfioTransport::VfioTransport(std::string spec) : path_(std::move(spec)) {
  bdf_ = parseBdf(path_);
  if (bdf_.empty())
    throwSys(EINVAL, "open", path_, "a VFIO spec is vfio:<domain:bus:slot.function>, e.g. vfio:0000:00:03.0");
  std::unique_lock<std::mutex> live(gLiveMu);
  auto prev = gLive.find(bdf_);
  if (prev != gLive.end()) {
    if (!prev->second->idle())
      throwSys(EBUSY, "open", path_,
               bdf_ + " is already open in this process (" + prev->second->path() + "): close it first");
    prev->second->teardown();  // unregisters it
  }
  dev_ = std::make_unique<VfioPciDevice>(sharedVfioContainer(path_), bdf_, path_);

  deviceId_ = identifyVirtioPci(dev_->configWindow(), path_, bdf_);
  vendorId_ = kVirtioPciVendor;

  // Start from a clean function when VFIO can reset it (vfio-pci also resets on open and release).
  dev_->resetFunction();
  const uint16_t cmd = dev_->config16(kPciCommand);
  dev_->setConfig16(kPciCommand, cmd | kPciCommandMemory | kPciCommandMaster);

  VirtioPciModern::Bars bars{};
  for (unsigned b = 0; b < kPciBars; b++) bars[b] = dev_->barWindow(b);
  pci_ = std::make_unique<VirtioPciModern>(path_, dev_->configWindow(), bars);
  configSize_ = pci_->configSize();
  if (!pci_->reset())
    throwSys(ETIMEDOUT, "virtio-pci: device_status", path_,
             "the device did not finish its reset within " + std::to_string(pci_->resetTimeout().count()) + " ms");

  pci_->readQueueLimits();
  const uint16_t nq = pci_->queueCount();
  queues_.resize(nq);
  for (uint16_t i = 0; i < nq; i++) queues_[i].maxSize = pci_->maxQueueSize(i);

  // MSI-X: vector 0 = configuration change, vector q+1 = queue q (routed in setupQueue).
  configFd_ = makeEventFd();
  const uint32_t want = uint32_t{nq} + 1;
  msixUsed_ = dev_->msixCount() < want ? dev_->msixCount() : want;
  if (msixUsed_ > 0) {
    std::vector<int> fds(msixUsed_, -1);
    fds[0] = configFd_.get();
    dev_->enableMsix(fds);
    if (!pci_->setConfigVector(0))
      throwSys(EIO, "virtio-pci: msix_config", path_, "the device refused MSI-X vector 0 for configuration changes");
  }

  // Without this the kernel blocks an unbind until we close, and we never learn of it.
  removalFd_ = makeEventFd();
  if (!dev_->setRequestFd(removalFd_.get())) removalFd_.reset();

  const uint64_t pgs = dev_->iommu().pageSizes();
  alignment_ = pgs ? (pgs & (~pgs + 1)) : 4096;
  window_ = dev_->iommu().leaseWindow(path_);
  haveWindow_ = true;
  if (msixUsed_ == 0 && dev_->hasIntx()) {
    try {
      startIntx();  // last: nothing after it can throw, so the thread never outlives a failed open
    } catch (...) {
      dev_->iommu().releaseWindow(window_);
      haveWindow_ = false;
      throw;
    }
  }
  gLive[bdf_] = this;
}

VfioTransport::~VfioTransport() {
  std::lock_guard<std::mutex> live(gLiveMu);
  teardown();
}

VfioPciDevice& VfioTransport::dev() {
  if (!dev_) throwSys(EBADF, "vfio", path_, "this handle was closed and the function has since been opened again");
  return *dev_;
}

bool VfioTransport::idle() noexcept {
  if (!dev_ || !mappings_.empty()) return !dev_;
  for (const Queue& q : queues_)
    if (q.setUp) return false;
  try {
    return status() == 0;
  } catch (...) {
    return true;
  }
}

VirtioPciModern& VfioTransport::pci() {
  dev();  // the same EBADF once the function was handed on
  return *pci_;
}

// ---------------------------------------------------------------- features, status, config

uint64_t VfioTransport::deviceFeatures() { return pci().deviceFeatures(); }

void VfioTransport::setDriverFeatures(uint64_t features) {
  pci().setDriverFeatures(features);
  driverFeatures_ = features;
}

uint8_t VfioTransport::status() { return pci().status(); }

void VfioTransport::setStatus(uint8_t s) {
  if (s == 0) return reset();
  pci().setStatus(s);
  // num_queues may follow the features: QEMU's virtio-net adds the queue pairs of VIRTIO_NET_F_MQ
  // only once the driver accepted it. Read it again before any queue is set up (as Linux does).
  if ((s & kStatusFeaturesOk) && !(s & kStatusDriverOk)) {
    for (const Queue& q : queues_)
      if (q.setUp) return;
    pci_->readQueueLimits();
    const uint16_t nq = pci_->queueCount();
    std::lock_guard<std::mutex> g(intxMu_);
    queues_.assign(nq, Queue{});
    for (uint16_t i = 0; i < nq; i++) queues_[i].maxSize = pci_->maxQueueSize(i);
  }
}

void VfioTransport::reset() {
  const bool ok = pci().reset();
  unrouteQueues();
  for (Queue& q : queues_) {
    q.setUp = false;
    q.enabled = false;
  }
  if (!ok)
    throwSys(ETIMEDOUT, "virtio-pci: device_status", path_,
             "the device did not report status 0 within " + std::to_string(pci_->resetTimeout().count()) + " ms");
  // A virtio reset also drops the configuration-change vector.
  if (msixUsed_ > 0) pci_->setConfigVector(0);
}

void VfioTransport::unrouteQueues() noexcept {
  if (intx_) {
    std::lock_guard<std::mutex> g(intxMu_);
    for (Queue& q : queues_) q.callFd = -1;
    return;
  }
  for (uint16_t i = 0; i < queues_.size(); i++) {
    if (!queues_[i].setUp || i + 1u >= msixUsed_) continue;
    try {
      dev_->setVector(i + 1u, -1);
    } catch (...) {
    }
  }
}

void VfioTransport::readConfig(uint32_t offset, void* buf, uint32_t len) { pci().readConfig(offset, buf, len); }

void VfioTransport::writeConfig(uint32_t offset, const void* buf, uint32_t len) { pci().writeConfig(offset, buf, len); }

// ---------------------------------------------------------------- DMA

std::string VfioTransport::rangeText() const { return "[" + hex(window_.first) + ", " + hex(window_.last) + "]"; }

void VfioTransport::mapDma(uint64_t iova, void* host, uint64_t len) {
  static const char* kSys = "ioctl(VFIO_IOMMU_MAP_DMA)";
  const uint64_t last = iova + len - 1;
  const uint64_t uaddr = reinterpret_cast<uintptr_t>(host);
  if (len == 0 || host == nullptr) throwSys(EINVAL, kSys, path_, "a DMA mapping needs memory and a length");
  if ((iova | len | uaddr) & (alignment_ - 1))
    throwSys(EINVAL, kSys, path_, "IOVA, address and length must be multiples of " + hex(alignment_));
  if (last < iova || iova < window_.first || last > window_.last)
    throwSys(EINVAL, kSys, path_,
             "IOVA range [" + hex(iova) + ", " + hex(last) + "] is outside this device's window " + rangeText());
  if (mappings_.overlaps(iova, len))
    throwSys(EEXIST, kSys, path_, "IOVA range [" + hex(iova) + ", " + hex(last) + "] overlaps a live mapping");

  const int err = dev().iommu().map(iova, host, len);
  if (err) {
    std::string hint;
    switch (err) {
      case ENOMEM:
        hint = memlockHint(len) + ", or grant CAP_IPC_LOCK";
        break;
      case ENOSPC:
        hint = "the VFIO DMA mapping limit was reached (" + std::to_string(mappings_.size()) +
               " mappings live for this device): raise vfio_iommu_type1's dma_entry_limit module parameter, or use "
               "fewer, larger regions";
        break;
      case EEXIST:
        hint = "IOVA range [" + hex(iova) + ", " + hex(last) + "] is already mapped in the shared VFIO container";
        break;
      case EACCES:
      case EPERM:
        hint = "the IOMMU refused the mapping: run as root, or check that the memory is writable";
        break;
      case EFAULT:
        hint = "the host memory is not mapped in this process";
        break;
      default:
        break;
    }
    throwSys(err, kSys, path_, hint);
  }
  mappings_.add(iova, host, len);
}

void VfioTransport::unmapDma(uint64_t iova, uint64_t len) {
  static const char* kSys = "ioctl(VFIO_IOMMU_UNMAP_DMA)";
  if (!mappings_.contains(iova, len))
    throwSys(EINVAL, kSys, path_, "no mapping of " + hex(len) + " bytes at IOVA " + hex(iova));
  const int err = dev().iommu().unmap(iova, len);
  if (err) throwSys(err, kSys, path_);
  mappings_.remove(iova);
}

// ---------------------------------------------------------------- queues

void VfioTransport::setupQueue(const QueueAddresses& a, int callFd) {
  static const char* kSys = "virtio-pci: queue setup";
  checkQueueIndex(a.index, static_cast<uint32_t>(queues_.size()), kSys, path_);
  Queue& q = queues_[a.index];
  // Split rings need a power of two; packed rings any size up to the maximum.
  checkQueueSize(a.size, q.maxSize, (driverFeatures_ & bit(kFeatureRingPacked)) != 0, kSys, path_);
  if (status() & kStatusDriverOk)
    throwSys(EBUSY, kSys, path_, "the device is running (DRIVER_OK): set queues up before start");
  if (intx_) {
    pci_->checkNotifyAddress(a.index);
    {
      std::lock_guard<std::mutex> g(intxMu_);
      q.callFd = callFd;
    }
    q.setUp = true;
    pci_->setupQueue(a.index, a.size, kVirtioMsiNoVector, a.desc, a.driver, a.device);
    q.enabled = false;
    return;
  }
  const uint32_t vector = uint32_t{a.index} + 1;
  if (vector >= msixUsed_)
    throwSys(ENOSPC, kSys, path_,
             "the function has " + std::to_string(dev_->msixCount()) + " MSI-X vectors; queue " +
                 std::to_string(a.index) + " needs vector " + std::to_string(vector));
  pci_->checkNotifyAddress(a.index);

  // Route the vector to the eventfd first, so no completion can be signalled into the void.
  dev_->setVector(vector, callFd);
  q.setUp = true;  // from here on reset() unroutes the vector

  pci_->setupQueue(a.index, a.size, static_cast<uint16_t>(vector), a.desc, a.driver, a.device);
  q.enabled = false;
}

void VfioTransport::enableQueue(uint16_t index) {
  static const char* kSys = "virtio-pci: queue_enable";
  if (index >= queues_.size() || !queues_[index].setUp) throwSys(EINVAL, kSys, path_, "queue not set up");
  Queue& q = queues_[index];
  if (q.enabled) return;
  pci().enableQueue(index);
  q.enabled = true;
}

void VfioTransport::notify(uint16_t index) {
  if (index >= queues_.size() || !queues_[index].setUp || !dev_) return;
  pci_->notify(index);
}

// ---------------------------------------------------------------- INTx

void VfioTransport::startIntx() {
  intxFd_ = makeEventFd();
  unmaskFd_ = makeEventFd();
  stopFd_ = makeEventFd();
  dev_->enableIntx(intxFd_.get(), unmaskFd_.get());
  intx_ = true;
  try {
    intxThread_ = std::thread([this] { intxLoop(); });
  } catch (...) {
    intx_ = false;
    dev_->disableIntx();
    throwSys(EAGAIN, "pthread_create", path_, "no thread for the INTx interrupt");
  }
}

void VfioTransport::stopIntx() noexcept {
  if (!intx_) return;
  signalEventFd(stopFd_.get());
  if (intxThread_.joinable()) intxThread_.join();
  dev_->disableIntx();
  intx_ = false;
}

void VfioTransport::intxLoop() noexcept {
  for (;;) {
    pollfd p[2] = {{intxFd_.get(), POLLIN, 0}, {stopFd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    uint64_t n = 0;
    if (::read(intxFd_.get(), &n, sizeof n) != static_cast<ssize_t>(sizeof n)) continue;
    uint8_t isr = 3;
    try {
      isr = pci_->readIsr();  // clears it, and so lowers the line
    } catch (...) {
    }
    if (isr & 1) {
      std::lock_guard<std::mutex> g(intxMu_);
      for (const Queue& q : queues_)
        if (q.callFd >= 0) signalEventFd(q.callFd);
    }
    if (isr & 2) signalEventFd(configFd_.get());
    signalEventFd(unmaskFd_.get());
  }
}

// ---------------------------------------------------------------- teardown

void VfioTransport::teardown() noexcept {
  if (!dev_) return;
  auto self = gLive.find(bdf_);
  if (self != gLive.end() && self->second == this) gLive.erase(self);
  // Leave the function reusable: device stopped, vectors unrouted, MSI-X off, bus mastering off,
  // function reset, this device's DMA mappings gone; the fds close with dev_.
  try {
    pci_->reset();
  } catch (...) {
  }
  stopIntx();
  unrouteQueues();
  dev_->disableMsix();
  try {
    const uint16_t cmd = dev_->config16(kPciCommand);
    dev_->setConfig16(kPciCommand, cmd & ~kPciCommandMaster);
  } catch (...) {
  }
  dev_->resetFunction();
  for (const auto& m : mappings_) dev_->iommu().unmap(m.first, m.second.len);
  mappings_.clear();
  if (haveWindow_) dev_->iommu().releaseWindow(window_);
  haveWindow_ = false;
  pci_.reset();
  dev_.reset();
  for (Queue& q : queues_) {
    q.setUp = false;
    q.enabled = false;
  }
}

}  // namespace vdpa
