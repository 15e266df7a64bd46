// Packed virtqueue, device side. The ring is read as hostile: only the head descriptor's flags say
// whether a chain is available, a chain never spans more descriptors than the ring has (so it always
// ends), indirect tables are bounded, aligned and may only carry WRITE, every buffer is translated
// through GuestMemory, and a buffer id may not be handed to the device twice while it holds it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ring/device_queue.h"
#include "ring/packed_driver_queue.h"

namespace vdpa {

class PackedDeviceQueue final : public DeviceQueue {
 public:
  PackedDeviceQueue(uint16_t num, uint64_t descIova, uint64_t driverIova, uint64_t deviceIova, bool eventIdx,
                    GuestMemory& mem);

  bool valid() const override { return desc_ != nullptr; }
  uint16_t size() const override { return num_; }
  // After a malformed chain the queue stays failed: every later pop() reports the same error.
  Pop pop(DeviceChain& chain) override;
  // Writes a used descriptor for buffer `id` and skips the descriptors that chain occupied; an id
  // the device does not hold (a lying device, in tests) skips one.
  void push(uint32_t id, uint32_t len) override;
  bool publish() override;
  void disableNotifications() override;
  bool enableNotifications() override;
  void corruptUsedIdx(uint16_t delta) override;
  const std::string& error() const override { return error_; }

 private:
  struct PendingUsed {
    uint16_t pos, flags;
  };

  Pop malformed(std::string why);
  bool addBuffer(uint64_t addr, uint32_t len, bool writable, DeviceChain& chain);
  bool walkIndirect(uint64_t addr, uint32_t len, DeviceChain& chain);
  bool availableAt(uint16_t pos, bool wrap) const;

  const uint16_t num_;
  const bool eventIdx_;
  GuestMemory& mem_;
  PackedDesc* desc_ = nullptr;
  const uint32_t* driverEvent_ = nullptr;  // the driver's wish for interrupts
  uint32_t* deviceEvent_ = nullptr;        // our wish for kicks
  uint16_t availPos_ = 0;                  // next descriptor to look at for a new chain
  bool availWrap_ = true;
  uint16_t usedPos_ = 0;  // where the next used descriptor goes
  bool usedWrap_ = true;
  uint16_t publishedPos_ = 0;  // usedPos at the last publish
  bool publishedWrap_ = true;
  std::vector<PendingUsed> pending_;
  std::vector<uint16_t> held_;  // per buffer id: ring descriptors of the chain we hold (0 = none)
  bool failed_ = false;
  std::string error_;
};

}  // namespace vdpa
