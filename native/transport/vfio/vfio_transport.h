// The VFIO transport: this library is the whole virtio-pci (modern, 1.x) driver of a function bound
// to vfio-pci. VfioPciDevice gives it config space, BARs and MSI-X; VfioIommu gives it DMA mappings;
// VirtioPciModern does the virtio-pci register work over the BARs. This class is the policy between
// them: bring-up and teardown order, interrupt routing, DMA bookkeeping.
//
// Interrupts: MSI-X vector 0 signals configuration changes (configChangeFd), vector q+1 signals
// queue q (routed to the callFd passed to setupQueue). Notifications are 16-bit writes of the queue
// index at notify_base + queue_notify_off * notify_off_multiplier in the (mmap'd) BAR. A function
// without MSI-X (QEMU's vectors=0) has one INTx line instead: a thread of this transport waits on it,
// reads the ISR status (which clears it), signals every routed queue's callFd on a queue interrupt and
// configChangeFd on a configuration change (a driver checks its used ring, so a call for an idle
// queue is harmless), then unmasks the line.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "memory/dma_mappings.h"
#include "transport/transport.h"
#include "transport/vfio/vfio_pci_device.h"
#include "transport/virtio_pci/virtio_pci_modern.h"

namespace vdpa {

class VfioTransport final : public Transport {
 public:
  // `spec` is "vfio:<pci address>", e.g. "vfio:0000:00:03.0" (the domain may be left out).
  explicit VfioTransport(std::string spec);
  ~VfioTransport() override;
  VfioTransport(const VfioTransport&) = delete;
  VfioTransport& operator=(const VfioTransport&) = delete;

  const char* kind() const override { return "vfio"; }
  const std::string& path() const override { return path_; }

  uint32_t deviceId() override { return deviceId_; }
  uint32_t vendorId() override { return vendorId_; }
  uint64_t deviceFeatures() override;
  void setDriverFeatures(uint64_t features) override;
  uint8_t status() override;
  // FEATURES_OK (before any queue is set up) reads num_queues and the queue limits again.
  void setStatus(uint8_t status) override;
  // device_status = 0, read until 0; forgets queue setup and unroutes their vectors. DMA mappings stay.
  void reset() override;

  uint32_t configSize() override { return configSize_; }
  void readConfig(uint32_t offset, void* buf, uint32_t len) override;
  void writeConfig(uint32_t offset, const void* buf, uint32_t len) override;
  int configChangeFd() override { return configFd_.get(); }
  int removalFd() override { return removalFd_.get(); }

  uint16_t maxQueues() override { return static_cast<uint16_t>(queues_.size()); }
  uint16_t maxQueueSize(uint16_t index) override { return index < queues_.size() ? queues_[index].maxSize : 0; }

  IovaRange iovaRange() override { return window_; }
  uint64_t iovaAlignment() override { return alignment_; }
  void mapDma(uint64_t iova, void* host, uint64_t len) override;
  void unmapDma(uint64_t iova, uint64_t len) override;

  void setupQueue(const QueueAddresses& a, int callFd) override;
  void enableQueue(uint16_t index) override;
  void notify(uint16_t index) override;

 private:
  struct Queue {
    uint16_t maxSize = 0;
    bool setUp = false;
    bool enabled = false;
    int callFd = -1;  // INTx only: signalled by the INTx thread; guarded by intxMu_
  };

  void unrouteQueues() noexcept;
  void startIntx();
  void stopIntx() noexcept;
  void intxLoop() noexcept;
  void teardown() noexcept;
  // True when the device is stopped and nothing of this transport is mapped (closed, or never used).
  bool idle() noexcept;
  VfioPciDevice& dev();
  // The register logic; throws EBADF once the function was handed to a later open.
  VirtioPciModern& pci();
  std::string rangeText() const;

  const std::string path_;
  std::string bdf_;
  std::unique_ptr<VfioPciDevice> dev_;
  std::unique_ptr<VirtioPciModern> pci_;  // over dev_'s windows: reset before it
  uint32_t deviceId_ = 0;
  uint32_t vendorId_ = 0;
  uint32_t configSize_ = 0;
  uint32_t msixUsed_ = 0;
  UniqueFd configFd_;
  UniqueFd removalFd_;  // release request; closed (-1) when the kernel cannot signal one
  std::vector<Queue> queues_;
  IovaRange window_{0, 0};
  bool haveWindow_ = false;
  uint64_t alignment_ = 4096;
  uint64_t driverFeatures_ = 0;
  DmaMappings mappings_;
  // INTx (no MSI-X): the line's eventfd, its unmask eventfd, the thread's stop eventfd, the thread.
  bool intx_ = false;
  UniqueFd intxFd_, unmaskFd_, stopFd_;
  std::mutex intxMu_;  // queues_[i].callFd while the thread runs
  std::thread intxThread_;
};

}  // namespace vdpa
