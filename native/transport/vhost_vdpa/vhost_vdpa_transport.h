// The vhost-vdpa transport: a vDPA device (hardware, or a VDUSE device served by a userspace daemon)
// reached through /dev/vhost-vdpa-N. Control = vhost ioctls; memory = IOTLB messages written to the
// fd (vhost-vdpa treats every ring/buffer address as an IOVA); notifications = kick/call eventfds, or
// the device's doorbell page when it offers one. This class is the policy; VhostIoctls makes the
// calls and vhost_vdpa_uapi.h holds the ABI.
//
// Bring-up order (the kernel and VDUSE depend on it): SET_OWNER before any IOTLB message, backend
// features, then the virtio status dance driven by VirtioDevice; per queue CALL/NUM/BASE/ADDR/KICK;
// SET_VRING_ENABLE before DRIVER_OK unless the device offers VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK,
// in which case enables are deferred until DRIVER_OK has been written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "memory/dma_mappings.h"
#include "transport/transport.h"
#include "transport/vhost_vdpa/vhost_ioctls.h"

namespace vdpa {

class VhostVdpaTransport final : public Transport {
 public:
  explicit VhostVdpaTransport(std::string path);
  ~VhostVdpaTransport() override;
  VhostVdpaTransport(const VhostVdpaTransport&) = delete;
  VhostVdpaTransport& operator=(const VhostVdpaTransport&) = delete;

  const char* kind() const override { return "vhost-vdpa"; }
  VhostVdpaTransport* asVhost() override { return this; }
  const std::string& path() const override { return io_.path(); }

  uint32_t deviceId() override { return deviceId_; }
  // Not part of the vhost uAPI: 0 here; lib/device.ts asks the vdpa generic-netlink family instead.
  uint32_t vendorId() override { return 0; }
  uint64_t deviceFeatures() override { return deviceFeatures_; }
  void setDriverFeatures(uint64_t features) override;
  uint8_t status() override;
  void setStatus(uint8_t status) override;
  // Status 0 (read back as 0), eventfds unbound, queue setup forgotten. DMA mappings stay: the core
  // owns them and unmaps them itself.
  void reset() override;

  uint32_t configSize() override { return configSize_; }
  void readConfig(uint32_t offset, void* buf, uint32_t len) override;
  void writeConfig(uint32_t offset, const void* buf, uint32_t len) override;
  int configChangeFd() override { return configFd_.get(); }

  uint16_t maxQueues() override { return maxQueues_; }
  uint16_t maxQueueSize(uint16_t) override { return maxQueueSize_; }

  IovaRange iovaRange() override { return iovaRange_; }
  uint64_t iovaAlignment() override { return pageSize_; }
  void mapDma(uint64_t iova, void* host, uint64_t len) override;
  void unmapDma(uint64_t iova, uint64_t len) override;
  // Every IOTLB update goes to the parent driver; VDUSE forwards it to its daemon and waits.
  bool dmaUpdatesNeedQuiesce() const override { return true; }
  // IOTLB_BATCH_BEGIN/END when VHOST_BACKEND_F_IOTLB_BATCH was negotiated; nothing otherwise.
  void beginDmaBatch() override;
  void endDmaBatch() override;

  void setupQueue(const QueueAddresses& a, int callFd) override;
  void enableQueue(uint16_t index) override;
  void notify(uint16_t index) override;

  // ---- vhost-vdpa specifics (not in the base interface)

  // The negotiated VHOST_BACKEND_F_* set (bit n = feature n) and what the kernel offered.
  uint64_t backendFeatures() const { return backendFeatures_; }
  uint64_t offeredBackendFeatures() const { return offeredBackendFeatures_; }
  bool hasBackendFeature(unsigned bitNumber) const { return (backendFeatures_ >> bitNumber) & 1; }

  // VHOST_VDPA_SUSPEND / RESUME; EOPNOTSUPP when the backend feature was not negotiated.
  bool canSuspend() override;
  void suspend() override;
  void resume();
  // VHOST_GET_VRING_BASE: the device's next avail index (split) for queue `index`.
  uint32_t getVringBase(uint16_t index);
  uint32_t vqGroup(uint16_t index);
  uint32_t groupCount();
  uint32_t asidCount();
  void setGroupAsid(uint32_t group, uint32_t asid);

 private:
  struct Queue {
    bool bound = false;  // eventfds were (maybe partly) handed to the kernel
    bool setUp = false;
    bool enabled = false;
    bool enablePending = false;  // deferred until DRIVER_OK (ENABLE_AFTER_DRIVER_OK)
    uint16_t size = 0;
    UniqueFd kickFd;
  };
  std::string rangeText() const;
  Queue& queueChecked(uint16_t index, const char* what);
  void enableNow(uint16_t index);
  void probeDoorbell(uint16_t index);
  // The shared part of reset() and the destructor. `strict` throws when status 0 is not reached.
  void teardown(bool strict);
  void invalidateAll() noexcept;

  VhostIoctls io_;
  UniqueFd configFd_;
  uint64_t pageSize_ = 4096;
  uint64_t offeredBackendFeatures_ = 0;
  uint64_t backendFeatures_ = 0;
  IovaRange iovaRange_{0, ~uint64_t{0}};
  uint32_t deviceId_ = 0;
  uint64_t deviceFeatures_ = 0;
  uint64_t driverFeatures_ = 0;
  uint32_t configSize_ = 0;
  uint16_t maxQueues_ = 0;
  uint16_t maxQueueSize_ = 0;
  std::vector<Queue> queues_;
  std::vector<DoorbellPage> doorbells_;  // per queue; probed once, kept for the fd's lifetime
  std::vector<bool> doorbellProbed_;
  DmaMappings mappings_;
  bool inBatch_ = false;
};

}  // namespace vdpa
