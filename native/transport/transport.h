// What every way of reaching a virtio device provides: mock, vhost-vdpa, vfio-pci. A transport
// never parses rings; it moves features, status, config, queue addresses, DMA mappings and
// notifications between the core and the device.
#pragma once

#include <cstdint>
#include <string>

#include "common/sys_error.h"

namespace vdpa {

class VhostVdpaTransport;

struct IovaRange {
  uint64_t first;
  uint64_t last;  // inclusive
};

struct QueueAddresses {
  uint16_t index;
  uint16_t size;
  uint64_t desc;    // descriptor table / descriptor ring (packed)
  uint64_t driver;  // avail ring / driver event suppression (packed)
  uint64_t device;  // used ring / device event suppression (packed)
};

class Transport {
 public:
  virtual ~Transport() = default;

  // "mock", "vhost-vdpa" or "vfio": what users see as device.transport.
  virtual const char* kind() const = 0;
  // The path errors name: "/dev/vhost-vdpa-0", "vfio:0000:00:03.0", "mock:blk".
  virtual const std::string& path() const = 0;
  // The vhost-vdpa specifics (suspend/resume, vring base, groups/ASIDs), or nullptr elsewhere.
  virtual VhostVdpaTransport* asVhost() { return nullptr; }

  virtual uint32_t deviceId() = 0;
  virtual uint32_t vendorId() = 0;
  virtual uint64_t deviceFeatures() = 0;
  virtual void setDriverFeatures(uint64_t features) = 0;
  virtual uint8_t status() = 0;
  virtual void setStatus(uint8_t status) = 0;
  // Writes status 0 and returns once the device reports the reset finished.
  virtual void reset() = 0;

  virtual uint32_t configSize() = 0;
  virtual void readConfig(uint32_t offset, void* buf, uint32_t len) = 0;
  virtual void writeConfig(uint32_t offset, const void* buf, uint32_t len) = 0;
  // An fd that becomes readable when the device signals a configuration change (-1: none).
  virtual int configChangeFd() = 0;
  // An fd that becomes readable when the host wants the device back (VFIO's release request when
  // the function is unbound from vfio-pci): the driver should fail its I/O and close. -1: none.
  virtual int removalFd() { return -1; }

  virtual uint16_t maxQueues() = 0;
  virtual uint16_t maxQueueSize(uint16_t index) = 0;

  // IOVAs the device accepts, and the granularity mappings must respect.
  virtual IovaRange iovaRange() = 0;
  virtual uint64_t iovaAlignment() = 0;
  virtual void mapDma(uint64_t iova, void* host, uint64_t len) = 0;
  virtual void unmapDma(uint64_t iova, uint64_t len) = 0;
  // True when a mapping change while the device works on chains breaks those chains (a VDUSE daemon
  // drops the mappings it uses), and the change may block: then, once the device runs, the core
  // applies mapping changes off the JS thread while no chain is in flight (see VirtioDevice).
  virtual bool dmaUpdatesNeedQuiesce() const { return false; }
  // Bracket a run of mapDma/unmapDma calls the device may apply as one (IOTLB batching).
  virtual void beginDmaBatch() {}
  virtual void endDmaBatch() {}

  // Tells the device where queue `a.index` lives and which eventfd to signal on completion.
  virtual void setupQueue(const QueueAddresses& a, int callFd) = 0;
  // Enables a configured queue (the transport decides whether that must wait for DRIVER_OK).
  virtual void enableQueue(uint16_t index) = 0;
  // Tells the device queue `index` has new buffers.
  virtual void notify(uint16_t index) = 0;

  // Hand-over: whether suspend() is offered (vhost-vdpa VHOST_BACKEND_F_SUSPEND, a mock option), and
  // the suspend itself: the device stops processing its queues and touches no buffer afterwards.
  virtual bool canSuspend() { return false; }
  virtual void suspend() {
    throwSys(EOPNOTSUPP, "suspend", path(), "the device cannot be suspended (no VHOST_BACKEND_F_SUSPEND)");
  }
};

}  // namespace vdpa
