#include "transport/vfio/vfio_transport.h"

#include <atomic>
#include <cctype>
#include <cstring>
#include <mutex>
#include <utility>

#include "common/checks.h"
#include "common/sys_error.h"
#include "common/syscall.h"
#include "ring/virtio_ring.h"

namespace vdpa {

namespace {

// PCI configuration space.
constexpr uint32_t kPciVendorId = 0x00;
constexpr uint32_t kPciDeviceId = 0x02;
constexpr uint32_t kPciCommand = 0x04;
constexpr uint32_t kPciStatus = 0x06;
constexpr uint32_t kPciCapabilityList = 0x34;
constexpr uint16_t kPciCommandMemory = 0x2;
constexpr uint16_t kPciCommandMaster = 0x4;
constexpr uint16_t kPciStatusCapList = 0x10;
constexpr uint8_t kPciCapIdVendor = 0x09;

// virtio-pci (virtio 1.x, 4.1).
constexpr uint16_t kVirtioPciVendor = 0x1af4;
constexpr uint16_t kVirtioPciModernBase = 0x1040;
constexpr uint8_t kCapCommon = 1;
constexpr uint8_t kCapNotify = 2;
constexpr uint8_t kCapIsr = 3;
constexpr uint8_t kCapDevice = 4;
constexpr uint16_t kNoVector = 0xffff;

// struct virtio_pci_common_cfg offsets.
constexpr uint32_t kDeviceFeatureSelect = 0;
constexpr uint32_t kDeviceFeature = 4;
constexpr uint32_t kDriverFeatureSelect = 8;
constexpr uint32_t kDriverFeature = 12;
constexpr uint32_t kMsixConfig = 16;
constexpr uint32_t kNumQueues = 18;
constexpr uint32_t kDeviceStatus = 20;
constexpr uint32_t kConfigGeneration = 21;
constexpr uint32_t kQueueSelect = 22;
constexpr uint32_t kQueueSize = 24;
constexpr uint32_t kQueueMsixVector = 26;
constexpr uint32_t kQueueEnable = 28;
constexpr uint32_t kQueueNotifyOff = 30;
constexpr uint32_t kQueueDesc = 32;
constexpr uint32_t kQueueDriver = 40;
constexpr uint32_t kQueueDevice = 48;
constexpr uint32_t kCommonCfgSize = 56;

constexpr int kResetPollMs = 2000;

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

// Live transports by PCI address. The N-API layer keeps a closed device (and so its transport)
// until garbage collection; a new open of the same function retires such an idle predecessor so that
// its late destructor cannot reset the function under the new owner.
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

  const uint16_t vendor = dev_->config16(kPciVendorId);
  const uint16_t device = dev_->config16(kPciDeviceId);
  if (vendor != kVirtioPciVendor)
    throwSys(ENODEV, "open", path_, bdf_ + " is not a virtio device (PCI vendor " + hex(vendor) + ", not 0x1af4)");
  if (device < kVirtioPciModernBase || device > 0x107f)
    throwSys(ENODEV, "open", path_,
             bdf_ + " has PCI device id " + hex(device) +
                 ": only modern (virtio 1.x, ids 0x1040-0x107f) virtio-pci functions are supported; for QEMU add "
                 "disable-legacy=on");
  vendorId_ = vendor;
  deviceId_ = device - kVirtioPciModernBase;

  // Start from a clean function when VFIO can reset it (vfio-pci also resets on open and release).
  dev_->resetFunction();
  const uint16_t cmd = dev_->config16(kPciCommand);
  dev_->setConfig16(kPciCommand, cmd | kPciCommandMemory | kPciCommandMaster);

  findCapabilities();
  if (!resetDevice())
    throwSys(ETIMEDOUT, "virtio-pci: device_status", path_,
             "the device did not finish its reset within " + std::to_string(kResetPollMs) + " ms");

  const uint16_t nq = static_cast<uint16_t>(rd(common_, kNumQueues, 2));
  queues_.resize(nq);
  for (uint16_t i = 0; i < nq; i++) {
    selectQueue(i);
    queues_[i].maxSize = static_cast<uint16_t>(rd(common_, kQueueSize, 2));
    queues_[i].notifyOff = static_cast<uint16_t>(rd(common_, kQueueNotifyOff, 2));
  }

  // MSI-X: vector 0 = configuration change, vector q+1 = queue q (routed in setupQueue).
  configFd_ = makeEventFd();
  const uint32_t want = uint32_t{nq} + 1;
  msixUsed_ = dev_->msixCount() < want ? dev_->msixCount() : want;
  if (msixUsed_ > 0) {
    std::vector<int> fds(msixUsed_, -1);
    fds[0] = configFd_.get();
    dev_->enableMsix(fds);
    wr(common_, kMsixConfig, 0, 2);
    if (rd(common_, kMsixConfig, 2) != 0)
      throwSys(EIO, "virtio-pci: msix_config", path_, "the device refused MSI-X vector 0 for configuration changes");
  }

  // Without this the kernel blocks an unbind until we close, and we never learn of it.
  removalFd_ = makeEventFd();
  if (!dev_->setRequestFd(removalFd_.get())) removalFd_.reset();

  const uint64_t pgs = dev_->iommu().pageSizes();
  alignment_ = pgs ? (pgs & (~pgs + 1)) : 4096;
  window_ = dev_->iommu().leaseWindow(path_);
  haveWindow_ = true;
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

void VfioTransport::findCapabilities() {
  if (!(dev_->config16(kPciStatus) & kPciStatusCapList))
    throwSys(ENODEV, "virtio-pci: capabilities", path_, "the function has no PCI capability list");
  uint8_t ptr = dev_->config8(kPciCapabilityList) & 0xfc;
  for (int guard = 0; ptr >= 0x40 && guard < 48; guard++) {
    const uint8_t id = dev_->config8(ptr);
    const uint8_t next = dev_->config8(ptr + 1) & 0xfc;
    if (id == kPciCapIdVendor && dev_->config8(ptr + 2) >= 16) {
      const uint8_t type = dev_->config8(ptr + 3);
      Loc l;
      l.bar = dev_->config8(ptr + 4);
      l.offset = dev_->config32(ptr + 8);
      l.length = dev_->config32(ptr + 12);
      l.present = l.bar < 6 && dev_->barUsable(l.bar) && uint64_t{l.offset} + l.length <= dev_->barSize(l.bar);
      // The first usable structure of each type wins (virtio 1.x, 4.1.4).
      Loc* slot = type == kCapCommon   ? &common_
                  : type == kCapNotify ? &notify_
                  : type == kCapIsr    ? &isr_
                  : type == kCapDevice ? &device_
                                       : nullptr;
      if (slot && !slot->present && l.present) {
        *slot = l;
        if (type == kCapNotify) notifyMultiplier_ = dev_->config32(ptr + 16);
      }
    }
    ptr = next;
  }
  if (!common_.present || common_.length < kCommonCfgSize)
    throwSys(ENODEV, "virtio-pci: capabilities", path_,
             "no usable common configuration structure: not a modern virtio-pci function");
  if (!notify_.present) throwSys(ENODEV, "virtio-pci: capabilities", path_, "no usable notification structure");
  configSize_ = device_.present ? device_.length : 0;
}

// ---------------------------------------------------------------- register access

uint32_t VfioTransport::rd(const Loc& l, uint32_t off, unsigned width) {
  return dev().barRead(l.bar, uint64_t{l.offset} + off, width);
}

void VfioTransport::wr(const Loc& l, uint32_t off, uint32_t value, unsigned width) {
  dev().barWrite(l.bar, uint64_t{l.offset} + off, value, width);
}

void VfioTransport::selectQueue(uint16_t index) { wr(common_, kQueueSelect, index, 2); }

// ---------------------------------------------------------------- features, status, config

uint64_t VfioTransport::deviceFeatures() {
  wr(common_, kDeviceFeatureSelect, 0, 4);
  const uint64_t lo = rd(common_, kDeviceFeature, 4);
  wr(common_, kDeviceFeatureSelect, 1, 4);
  const uint64_t hi = rd(common_, kDeviceFeature, 4);
  return lo | hi << 32;
}

void VfioTransport::setDriverFeatures(uint64_t features) {
  if (status() & kStatusFeaturesOk)
    throwSys(EBUSY, "virtio-pci: driver_feature", path_, "features are fixed once FEATURES_OK is set; reset first");
  wr(common_, kDriverFeatureSelect, 0, 4);
  wr(common_, kDriverFeature, static_cast<uint32_t>(features), 4);
  wr(common_, kDriverFeatureSelect, 1, 4);
  wr(common_, kDriverFeature, static_cast<uint32_t>(features >> 32), 4);
  driverFeatures_ = features;
}

uint8_t VfioTransport::status() { return static_cast<uint8_t>(rd(common_, kDeviceStatus, 1)); }

void VfioTransport::setStatus(uint8_t s) {
  if (s == 0) return reset();
  wr(common_, kDeviceStatus, s, 1);
}

bool VfioTransport::resetDevice() {
  wr(common_, kDeviceStatus, 0, 1);
  for (int waited = 0; waited <= kResetPollMs; waited++) {
    if (rd(common_, kDeviceStatus, 1) == 0) return true;
    sleepFor(std::chrono::milliseconds(1));
  }
  return false;
}

void VfioTransport::reset() {
  const bool ok = resetDevice();
  unrouteQueues();
  for (Queue& q : queues_) {
    q.setUp = false;
    q.enabled = false;
    q.doorbell = nullptr;
  }
  if (!ok)
    throwSys(ETIMEDOUT, "virtio-pci: device_status", path_,
             "the device did not report status 0 within " + std::to_string(kResetPollMs) + " ms");
  // A virtio reset also drops the configuration-change vector.
  if (msixUsed_ > 0) wr(common_, kMsixConfig, 0, 2);
}

void VfioTransport::unrouteQueues() noexcept {
  for (uint16_t i = 0; i < queues_.size(); i++) {
    if (!queues_[i].setUp || i + 1u >= msixUsed_) continue;
    try {
      dev_->setVector(i + 1u, -1);
    } catch (...) {
    }
  }
}

void VfioTransport::readConfig(uint32_t offset, void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize_, "virtio-pci: device config", path_);
  auto* out = static_cast<uint8_t*>(buf);
  // Multi-field reads are retried until config_generation holds still across them.
  for (int attempt = 0; attempt < 16; attempt++) {
    const uint32_t before = rd(common_, kConfigGeneration, 1);
    uint32_t pos = 0;
    while (pos < len) {
      const uint32_t at = offset + pos;
      const uint32_t left = len - pos;
      const unsigned w = (at % 4 == 0 && left >= 4) ? 4 : (at % 2 == 0 && left >= 2) ? 2 : 1;
      const uint32_t v = rd(device_, at, w);
      for (unsigned i = 0; i < w; i++) out[pos + i] = static_cast<uint8_t>(v >> (8 * i));
      pos += w;
    }
    if (rd(common_, kConfigGeneration, 1) == before) return;
  }
  throwSys(EAGAIN, "virtio-pci: device config", path_, "config_generation kept changing during the read");
}

void VfioTransport::writeConfig(uint32_t offset, const void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize_, "virtio-pci: device config", path_);
  const auto* in = static_cast<const uint8_t*>(buf);
  uint32_t pos = 0;
  while (pos < len) {
    const uint32_t at = offset + pos;
    const uint32_t left = len - pos;
    const unsigned w = (at % 4 == 0 && left >= 4) ? 4 : (at % 2 == 0 && left >= 2) ? 2 : 1;
    uint32_t v = 0;
    for (unsigned i = 0; i < w; i++) v |= uint32_t{in[pos + i]} << (8 * i);
    wr(device_, at, v, w);
    pos += w;
  }
}

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
  if (a.index >= queues_.size())
    throwSys(
        EINVAL, kSys, path_,
        "the device has " + std::to_string(queues_.size()) + " queues; there is no queue " + std::to_string(a.index));
  Queue& q = queues_[a.index];
  // Split rings need a power of two; packed rings any size up to the maximum.
  checkQueueSize(a.size, q.maxSize, (driverFeatures_ & bit(kFeatureRingPacked)) != 0, kSys, path_);
  if (status() & kStatusDriverOk)
    throwSys(EBUSY, kSys, path_, "the device is running (DRIVER_OK): set queues up before start");
  const uint32_t vector = uint32_t{a.index} + 1;
  if (vector >= msixUsed_)
    throwSys(ENOSPC, kSys, path_,
             "the function has " + std::to_string(dev_->msixCount()) + " MSI-X vectors; queue " +
                 std::to_string(a.index) + " needs vector " + std::to_string(vector));
  const uint64_t doorbell = uint64_t{notify_.offset} + uint64_t{q.notifyOff} * notifyMultiplier_;
  if (uint64_t{q.notifyOff} * notifyMultiplier_ + 2 > notify_.length)
    throwSys(EIO, kSys, path_,
             "queue " + std::to_string(a.index) + "'s notify address lies outside the notify structure");

  // Route the vector to the eventfd first, so no completion can be signalled into the void.
  dev_->setVector(vector, callFd);
  q.setUp = true;  // from here on reset() unroutes the vector

  selectQueue(a.index);
  wr(common_, kQueueSize, a.size, 2);
  wr(common_, kQueueMsixVector, vector, 2);
  const uint32_t back = rd(common_, kQueueMsixVector, 2);
  if (back != vector)
    throwSys(EIO, kSys, path_,
             "the device refused MSI-X vector " + std::to_string(vector) + " for queue " + std::to_string(a.index) +
                 (back == kNoVector ? " (it reads back VIRTIO_MSI_NO_VECTOR)"
                                    : " (it reads back " + std::to_string(back) + ")"));
  wr(common_, kQueueDesc, static_cast<uint32_t>(a.desc), 4);
  wr(common_, kQueueDesc + 4, static_cast<uint32_t>(a.desc >> 32), 4);
  wr(common_, kQueueDriver, static_cast<uint32_t>(a.driver), 4);
  wr(common_, kQueueDriver + 4, static_cast<uint32_t>(a.driver >> 32), 4);
  wr(common_, kQueueDevice, static_cast<uint32_t>(a.device), 4);
  wr(common_, kQueueDevice + 4, static_cast<uint32_t>(a.device >> 32), 4);

  q.enabled = false;
  q.doorbellOffset = doorbell;
  q.doorbell = reinterpret_cast<volatile uint16_t*>(dev_->barPointer(notify_.bar, doorbell, 2));
}

void VfioTransport::enableQueue(uint16_t index) {
  static const char* kSys = "virtio-pci: queue_enable";
  if (index >= queues_.size() || !queues_[index].setUp) throwSys(EINVAL, kSys, path_, "queue not set up");
  Queue& q = queues_[index];
  if (q.enabled) return;
  selectQueue(index);
  wr(common_, kQueueEnable, 1, 2);
  if (rd(common_, kQueueEnable, 2) != 1)
    throwSys(EIO, kSys, path_, "the device did not enable queue " + std::to_string(index));
  q.enabled = true;
}

void VfioTransport::notify(uint16_t index) {
  if (index >= queues_.size() || !queues_[index].setUp || !dev_) return;
  Queue& q = queues_[index];
  // Ring writes must be visible before the device sees the doorbell.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (q.doorbell) {
    *q.doorbell = index;
    return;
  }
  dev_->barWrite(notify_.bar, q.doorbellOffset, index, 2);
}

// ---------------------------------------------------------------- teardown

void VfioTransport::teardown() noexcept {
  if (!dev_) return;
  auto self = gLive.find(bdf_);
  if (self != gLive.end() && self->second == this) gLive.erase(self);
  // Leave the function reusable: device stopped, vectors unrouted, MSI-X off, bus mastering off,
  // function reset, this device's DMA mappings gone; the fds close with dev_.
  try {
    resetDevice();
  } catch (...) {
  }
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
  dev_.reset();
  for (Queue& q : queues_) {
    q.setUp = false;
    q.enabled = false;
    q.doorbell = nullptr;
  }
}

}  // namespace vdpa
