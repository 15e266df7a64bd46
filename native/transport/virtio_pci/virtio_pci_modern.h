// The register logic of a modern (virtio 1.x) virtio-pci function, over RegisterWindows: the
// capability walk, the common configuration (features through the select windows, status and its
// reset handshake, queue setup), notifications and the device-specific configuration. It knows
// nothing of VFIO (interrupt routing, DMA, function reset stay with the transport), so it runs
// against a fake register file in the tests.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "transport/virtio_pci/register_window.h"
#include "transport/virtio_pci/virtio_pci_regs.h"

namespace vdpa {

// Where one virtio-pci structure lives: BAR + offset + length.
struct VirtioPciRegion {
  bool present = false;
  uint8_t bar = 0;
  uint32_t offset = 0;
  uint32_t length = 0;
};

// The virtio device type of a function, from its PCI vendor and device IDs. Throws ENODEV (naming
// `name`) for a function that is not a modern virtio-pci one.
uint32_t identifyVirtioPci(RegisterWindow& config, const std::string& path, const std::string& name);

class VirtioPciModern {
 public:
  using Bars = std::array<RegisterWindow*, kPciBars>;  // nullptr: no usable BAR at that index

  // Walks the capability list in `config` and keeps the first usable structure of each type
  // (virtio 1.2 §4.1.4). Throws ENODEV without a usable common configuration or notification
  // structure, saying which capability was refused and why. Errors name `path`.
  VirtioPciModern(std::string path, RegisterWindow& config, const Bars& bars,
                  std::chrono::milliseconds resetTimeout = std::chrono::milliseconds(2000));

  const VirtioPciRegion& common() const { return common_; }
  const VirtioPciRegion& notifyRegion() const { return notify_; }
  const VirtioPciRegion& isr() const { return isr_; }
  const VirtioPciRegion& deviceConfig() const { return device_; }
  uint32_t notifyMultiplier() const { return notifyMultiplier_; }
  std::chrono::milliseconds resetTimeout() const { return resetTimeout_; }

  uint64_t deviceFeatures();
  // Throws EBUSY once FEATURES_OK is set.
  void setDriverFeatures(uint64_t features);
  uint8_t status();
  void setStatus(uint8_t status);
  // Writes device_status 0 and waits until it reads 0; false on timeout.
  bool reset();

  // Reads num_queues and each queue's maximum size and notify offset.
  void readQueueLimits();
  uint16_t queueCount() const { return static_cast<uint16_t>(queues_.size()); }
  uint16_t maxQueueSize(uint16_t index) const { return index < queues_.size() ? queues_[index].maxSize : 0; }

  // Reads (and so clears) the ISR status: bit 0 a queue interrupt, bit 1 a configuration change. A
  // device without the ISR structure reads as both.
  uint8_t readIsr() { return isr_.present ? bar(isr_).read8(isr_.offset) : 3; }
  // Routes configuration changes to MSI-X `vector`; false when the device does not take it.
  bool setConfigVector(uint16_t vector);
  // Throws EIO when queue `index`'s doorbell lies outside the notification structure.
  void checkNotifyAddress(uint16_t index);
  // Writes queue `index`'s size, MSI-X vector (read back: EIO when refused) and ring addresses.
  void setupQueue(uint16_t index, uint16_t size, uint16_t vector, uint64_t desc, uint64_t driver, uint64_t device);
  // queue_enable = 1, read back: EIO when the device does not enable it.
  void enableQueue(uint16_t index);
  // Rings queue `index`'s doorbell (after a full fence, so ring writes are visible first).
  void notify(uint16_t index);

  uint32_t configSize() const { return device_.present ? device_.length : 0; }
  // Device-specific configuration; reads retry until config_generation holds still (EAGAIN if never).
  void readConfig(uint32_t offset, void* buf, uint32_t len);
  void writeConfig(uint32_t offset, const void* buf, uint32_t len);

 private:
  struct Queue {
    uint16_t maxSize = 0;
    uint16_t notifyOff = 0;
    volatile uint16_t* doorbell = nullptr;  // mapped notify address, else written through the window
    uint64_t doorbellOffset = 0;            // in the notify BAR
  };

  void findCapabilities(RegisterWindow& config);
  Queue& queue(uint16_t index, const char* syscall);
  RegisterWindow& bar(const VirtioPciRegion& r) { return *bars_[r.bar]; }
  uint16_t rd16(uint32_t off) { return bar(common_).read16(common_.offset + off); }
  void wr16(uint32_t off, uint16_t v) { bar(common_).write16(common_.offset + off, v); }
  uint32_t rd32(uint32_t off) { return bar(common_).read32(common_.offset + off); }
  void wr32(uint32_t off, uint32_t v) { bar(common_).write32(common_.offset + off, v); }
  void selectQueue(uint16_t index) { wr16(kCommonQueueSelect, index); }

  const std::string path_;
  const Bars bars_;
  const std::chrono::milliseconds resetTimeout_;
  VirtioPciRegion common_, notify_, isr_, device_;
  uint32_t notifyMultiplier_ = 0;
  std::vector<Queue> queues_;
};

}  // namespace vdpa
