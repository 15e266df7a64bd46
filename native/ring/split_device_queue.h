// Split virtqueue, device side: what the mock devices (and a future VDUSE backend) use to consume
// chains. Everything read from the ring is treated as hostile: indexes are bounded, chains are
// length-limited (so loops end), and every buffer is translated and range-checked through
// GuestMemory before anyone touches it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ring/device_queue.h"
#include "ring/virtio_ring.h"

namespace vdpa {

class SplitDeviceQueue final : public DeviceQueue {
 public:
  SplitDeviceQueue(uint16_t num, uint64_t descIova, uint64_t availIova, uint64_t usedIova, bool eventIdx,
                   GuestMemory& mem);

  // False when the ring addresses did not translate; error() says why.
  bool valid() const override { return desc_ != nullptr; }
  uint16_t size() const override { return num_; }

  // Takes the next available chain. kMalformed leaves the reason in error(); the device should then
  // stop using the queue (a real device would set NEEDS_RESET).
  Pop pop(DeviceChain& chain) override;
  // Records a used element (not yet visible to the driver).
  void push(uint32_t id, uint32_t len) override;
  // Makes pushed elements visible; returns whether the driver asked for an interrupt.
  bool publish() override;
  // Suppresses or re-enables kicks; enable returns true when new chains arrived meanwhile.
  void disableNotifications() override;
  bool enableNotifications() override;
  // Fault injection for tests: move the used index by `delta` without writing elements.
  void corruptUsedIdx(uint16_t delta) override;

  const std::string& error() const override { return error_; }

 private:
  bool malformed(std::string why);
  bool walkTable(const VringDesc* table, uint32_t tableLen, uint16_t first, bool indirect, DeviceChain& chain);

  const uint16_t num_;
  const bool eventIdx_;
  GuestMemory& mem_;
  const VringDesc* desc_ = nullptr;
  const uint16_t* availFlags_ = nullptr;
  const uint16_t* availIdx_ = nullptr;
  const uint16_t* availRing_ = nullptr;
  const uint16_t* usedEvent_ = nullptr;
  uint16_t* usedFlags_ = nullptr;
  uint16_t* usedIdx_ = nullptr;
  VringUsedElem* usedRing_ = nullptr;
  uint16_t* availEvent_ = nullptr;
  uint16_t lastAvail_ = 0;
  uint16_t usedShadow_ = 0;
  uint16_t publishedUsed_ = 0;
  std::string error_;
};

}  // namespace vdpa
