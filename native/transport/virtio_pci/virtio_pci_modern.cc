#include "transport/virtio_pci/virtio_pci_modern.h"

#include <atomic>

#include "common/checks.h"
#include "common/sys_error.h"
#include "common/syscall.h"
#include "ring/virtio_ring.h"

namespace vdpa {

namespace {

const char* capName(uint8_t type) {
  switch (type) {
    case kVirtioPciCapCommon:
      return "common configuration";
    case kVirtioPciCapNotify:
      return "notification";
    case kVirtioPciCapIsr:
      return "ISR";
    default:
      return "device configuration";
  }
}

// Accesses of the natural width for [at, at + left): 4, 2 or 1 bytes.
unsigned accessWidth(uint32_t at, uint32_t left) {
  return (at % 4 == 0 && left >= 4) ? 4 : (at % 2 == 0 && left >= 2) ? 2 : 1;
}

}  // namespace

uint32_t identifyVirtioPci(RegisterWindow& config, const std::string& path, const std::string& name) {
  const uint16_t vendor = config.read16(kPciVendorId);
  const uint16_t device = config.read16(kPciDeviceId);
  if (vendor != kVirtioPciVendor)
    throwSys(ENODEV, "open", path, name + " is not a virtio device (PCI vendor " + hex(vendor) + ", not 0x1af4)");
  if (device < kVirtioPciModernFirst || device > kVirtioPciModernLast)
    throwSys(ENODEV, "open", path,
             name + " has PCI device id " + hex(device) +
                 ": only modern (virtio 1.x, ids 0x1040-0x107f) virtio-pci functions are supported; for QEMU add "
                 "disable-legacy=on");
  return device - kVirtioPciModernFirst;
}

// ---------------------------------------------------------------- capabilities

VirtioPciModern::VirtioPciModern(std::string path, RegisterWindow& config, const Bars& bars,
                                 std::chrono::milliseconds resetTimeout)
    : path_(std::move(path)), bars_(bars), resetTimeout_(resetTimeout) {
  findCapabilities(config);
}

void VirtioPciModern::findCapabilities(RegisterWindow& config) {
  static const char* kSys = "virtio-pci: capabilities";
  if (!(config.read16(kPciStatus) & kPciStatusCapList))
    throwSys(ENODEV, kSys, path_, "the function has no PCI capability list");
  std::string refused[kVirtioPciCapDevice + 1];  // why the first capability of each type was not usable
  uint8_t ptr = config.read8(kPciCapabilityList) & 0xfc;
  for (int guard = 0; ptr >= 0x40 && guard < 48; guard++) {
    const uint8_t id = config.read8(ptr);
    const uint8_t next = config.read8(ptr + kCapNext) & 0xfc;
    if (id == kPciCapIdVendor && config.read8(ptr + kCapLen) >= kVirtioPciCapMinLen) {
      const uint8_t type = config.read8(ptr + kCapType);
      VirtioPciRegion r;
      r.bar = config.read8(ptr + kCapBar);
      r.offset = config.read32(ptr + kCapOffset);
      r.length = config.read32(ptr + kCapLength);
      const bool barUsable = r.bar < kPciBars && bars_[r.bar] != nullptr;
      r.present = barUsable && fitsWithin(r.offset, r.length, bars_[r.bar]->size());
      VirtioPciRegion* slot = type == kVirtioPciCapCommon   ? &common_
                              : type == kVirtioPciCapNotify ? &notify_
                              : type == kVirtioPciCapIsr    ? &isr_
                              : type == kVirtioPciCapDevice ? &device_
                                                            : nullptr;
      if (slot && !slot->present && r.present) {
        *slot = r;
        if (type == kVirtioPciCapNotify) notifyMultiplier_ = config.read32(ptr + kCapNotifyMultiplier);
      } else if (slot && !slot->present && refused[type].empty()) {
        refused[type] =
            std::string("the ") + capName(type) + " capability at " + hex(ptr) +
            (barUsable ? " points past the end of BAR " + std::to_string(r.bar) + " (offset " + hex(r.offset) +
                             ", length " + hex(r.length) + ", BAR size " + hex(bars_[r.bar]->size()) + ")"
                       : " names BAR " + std::to_string(r.bar) + ", which the function does not have");
      }
    }
    ptr = next;
  }
  if (common_.present && common_.length < kCommonCfgSize)
    refused[kVirtioPciCapCommon] = "the common configuration structure has " + std::to_string(common_.length) +
                                   " bytes, less than struct virtio_pci_common_cfg's " + std::to_string(kCommonCfgSize);
  if (!common_.present || common_.length < kCommonCfgSize)
    throwSys(ENODEV, kSys, path_,
             refused[kVirtioPciCapCommon].empty()
                 ? "no usable common configuration structure: not a modern virtio-pci function"
                 : "no usable common configuration structure: " + refused[kVirtioPciCapCommon]);
  if (!notify_.present)
    throwSys(ENODEV, kSys, path_,
             refused[kVirtioPciCapNotify].empty()
                 ? "no usable notification structure"
                 : "no usable notification structure: " + refused[kVirtioPciCapNotify]);
}

// ---------------------------------------------------------------- features, status

uint64_t VirtioPciModern::deviceFeatures() {
  wr32(kCommonDeviceFeatureSelect, 0);
  const uint64_t lo = rd32(kCommonDeviceFeature);
  wr32(kCommonDeviceFeatureSelect, 1);
  const uint64_t hi = rd32(kCommonDeviceFeature);
  return lo | hi << 32;
}

void VirtioPciModern::setDriverFeatures(uint64_t features) {
  if (status() & kStatusFeaturesOk)
    throwSys(EBUSY, "virtio-pci: driver_feature", path_, "features are fixed once FEATURES_OK is set; reset first");
  wr32(kCommonDriverFeatureSelect, 0);
  wr32(kCommonDriverFeature, static_cast<uint32_t>(features));
  wr32(kCommonDriverFeatureSelect, 1);
  wr32(kCommonDriverFeature, static_cast<uint32_t>(features >> 32));
}

uint8_t VirtioPciModern::status() { return bar(common_).read8(common_.offset + kCommonDeviceStatus); }

void VirtioPciModern::setStatus(uint8_t s) { bar(common_).write8(common_.offset + kCommonDeviceStatus, s); }

bool VirtioPciModern::reset() {
  setStatus(0);
  for (int64_t waited = 0; waited <= resetTimeout_.count(); waited++) {
    if (status() == 0) return true;
    sleepFor(std::chrono::milliseconds(1));
  }
  return false;
}

// ---------------------------------------------------------------- queues

void VirtioPciModern::readQueueLimits() {
  const uint16_t n = rd16(kCommonNumQueues);
  queues_.assign(n, Queue{});
  for (uint16_t i = 0; i < n; i++) {
    selectQueue(i);
    queues_[i].maxSize = rd16(kCommonQueueSize);
    queues_[i].notifyOff = rd16(kCommonQueueNotifyOff);
  }
}

VirtioPciModern::Queue& VirtioPciModern::queue(uint16_t index, const char* syscall) {
  checkQueueIndex(index, static_cast<uint32_t>(queues_.size()), syscall, path_);
  return queues_[index];
}

bool VirtioPciModern::setConfigVector(uint16_t vector) {
  wr16(kCommonMsixConfig, vector);
  return rd16(kCommonMsixConfig) == vector;
}

void VirtioPciModern::checkNotifyAddress(uint16_t index) {
  const Queue& q = queue(index, "virtio-pci: queue setup");
  if (uint64_t{q.notifyOff} * notifyMultiplier_ + 2 > notify_.length)
    throwSys(EIO, "virtio-pci: queue setup", path_,
             "queue " + std::to_string(index) + "'s notify address lies outside the notify structure");
}

void VirtioPciModern::setupQueue(uint16_t index, uint16_t size, uint16_t vector, uint64_t desc, uint64_t driver,
                                 uint64_t device) {
  static const char* kSys = "virtio-pci: queue setup";
  Queue& q = queue(index, kSys);
  checkNotifyAddress(index);
  selectQueue(index);
  wr16(kCommonQueueSize, size);
  wr16(kCommonQueueMsixVector, vector);
  const uint16_t back = rd16(kCommonQueueMsixVector);
  if (back != vector)
    throwSys(EIO, kSys, path_,
             "the device refused MSI-X vector " + std::to_string(vector) + " for queue " + std::to_string(index) +
                 (back == kVirtioMsiNoVector ? " (it reads back VIRTIO_MSI_NO_VECTOR)"
                                             : " (it reads back " + std::to_string(back) + ")"));
  bar(common_).write64(common_.offset + kCommonQueueDesc, desc);
  bar(common_).write64(common_.offset + kCommonQueueDriver, driver);
  bar(common_).write64(common_.offset + kCommonQueueDevice, device);
  q.doorbellOffset = uint64_t{notify_.offset} + uint64_t{q.notifyOff} * notifyMultiplier_;
  q.doorbell = reinterpret_cast<volatile uint16_t*>(bar(notify_).mapped(q.doorbellOffset, 2));
}

void VirtioPciModern::enableQueue(uint16_t index) {
  queue(index, "virtio-pci: queue_enable");
  selectQueue(index);
  wr16(kCommonQueueEnable, 1);
  if (rd16(kCommonQueueEnable) != 1)
    throwSys(EIO, "virtio-pci: queue_enable", path_, "the device did not enable queue " + std::to_string(index));
}

void VirtioPciModern::notify(uint16_t index) {
  if (index >= queues_.size()) return;
  const Queue& q = queues_[index];
  // Ring writes must be visible before the device sees the doorbell.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (q.doorbell) {
    *q.doorbell = index;
    return;
  }
  bar(notify_).write16(q.doorbellOffset, index);
}

// ---------------------------------------------------------------- device configuration

void VirtioPciModern::readConfig(uint32_t offset, void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize(), "virtio-pci: device config", path_);
  auto* out = static_cast<uint8_t*>(buf);
  // Multi-field reads are retried until config_generation holds still across them.
  for (int attempt = 0; attempt < 16; attempt++) {
    const uint8_t before = bar(common_).read8(common_.offset + kCommonConfigGeneration);
    for (uint32_t pos = 0; pos < len;) {
      const uint32_t at = offset + pos;
      const unsigned width = accessWidth(at, len - pos);
      const uint64_t where = uint64_t{device_.offset} + at;
      RegisterWindow& w = bar(device_);
      const uint32_t v = width == 4 ? w.read32(where) : width == 2 ? w.read16(where) : w.read8(where);
      for (unsigned i = 0; i < width; i++) out[pos + i] = static_cast<uint8_t>(v >> (8 * i));
      pos += width;
    }
    if (bar(common_).read8(common_.offset + kCommonConfigGeneration) == before) return;
  }
  throwSys(EAGAIN, "virtio-pci: device config", path_, "config_generation kept changing during the read");
}

void VirtioPciModern::writeConfig(uint32_t offset, const void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize(), "virtio-pci: device config", path_);
  const auto* in = static_cast<const uint8_t*>(buf);
  for (uint32_t pos = 0; pos < len;) {
    const uint32_t at = offset + pos;
    const unsigned width = accessWidth(at, len - pos);
    const uint64_t where = uint64_t{device_.offset} + at;
    uint32_t v = 0;
    for (unsigned i = 0; i < width; i++) v |= uint32_t{in[pos + i]} << (8 * i);
    RegisterWindow& w = bar(device_);
    if (width == 4)
      w.write32(where, v);
    else if (width == 2)
      w.write16(where, static_cast<uint16_t>(v));
    else
      w.write8(where, static_cast<uint8_t>(v));
    pos += width;
  }
}

}  // namespace vdpa
