// The device side of one virtqueue, independent of ring format: what the mock devices (and a future
// VDUSE backend) use to consume chains. Everything read from the ring is treated as hostile: chains
// are length-limited (so loops end) and every buffer is translated and range-checked through
// GuestMemory before anyone touches it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vdpa {

// Translates device addresses to host pointers. Returns nullptr when [iova, iova+len) is not
// entirely inside one mapping.
class GuestMemory {
 public:
  virtual ~GuestMemory() = default;
  virtual uint8_t* translate(uint64_t iova, uint64_t len) = 0;
};

struct DeviceBuffer {
  uint8_t* data;
  uint32_t len;
};

struct DeviceChain {
  uint16_t head = 0;  // the id push() takes back: split = head descriptor, packed = buffer id
  std::vector<DeviceBuffer> readable;
  std::vector<DeviceBuffer> writable;
  uint64_t readableBytes = 0;
  uint64_t writableBytes = 0;
  void clear() {
    readable.clear();
    writable.clear();
    readableBytes = writableBytes = 0;
  }
};

class DeviceQueue {
 public:
  enum class Pop { kEmpty, kChain, kMalformed };

  virtual ~DeviceQueue() = default;

  // False when the ring addresses did not translate; error() says why.
  virtual bool valid() const = 0;
  virtual uint16_t size() const = 0;
  // Takes the next available chain. kMalformed leaves the reason in error(); the device should then
  // stop using the queue (a real device would set NEEDS_RESET).
  virtual Pop pop(DeviceChain& chain) = 0;
  // Records a used element for chain `id` (not yet visible to the driver).
  virtual void push(uint32_t id, uint32_t len) = 0;
  // Makes pushed elements visible; returns whether the driver asked for an interrupt.
  virtual bool publish() = 0;
  // Suppresses or re-enables kicks; enable returns true when new chains arrived meanwhile.
  virtual void disableNotifications() = 0;
  virtual bool enableNotifications() = 0;
  // Fault injection for tests: moves the used position by `delta` without writing elements (split:
  // the used index; packed: `delta` descriptors, flipping the wrap counter at each lap).
  virtual void corruptUsedIdx(uint16_t delta) = 0;
  virtual const std::string& error() const = 0;
};

}  // namespace vdpa
