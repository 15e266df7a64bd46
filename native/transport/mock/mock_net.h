// mock:net — a loopback NIC: every frame sent on the transmit queue comes back on the receive queue.
#pragma once

#include <deque>

#include "ring/virtio_config.h"
#include "transport/mock/mock_model.h"

namespace vdpa {

constexpr unsigned kNetFMtu = 3, kNetFMac = 5, kNetFStatus = 16;

class MockNet final : public MockModel {
 public:
  explicit MockNet(const MockOptions& opts) : opts_(opts) {}

  uint32_t deviceId() const override { return deviceTypeId(VirtioDeviceType::kNet); }
  uint64_t features() const override { return bit(kNetFMtu) | bit(kNetFMac) | bit(kNetFStatus); }
  uint16_t numQueues() const override { return 2; }  // 0 = receive, 1 = transmit
  std::vector<uint8_t> config() const override;
  bool handle(uint16_t q, const DeviceChain& chain, uint32_t* usedLen) override;
  void drainDeferred(uint16_t q, std::vector<UsedEntry>& done) override;
  void reset() override {
    backlog_.clear();
    rxBuffers_.clear();
  }

 private:
  // Frames sent but not yet received: bounded like a real NIC's FIFO, the oldest dropped past it.
  static constexpr size_t kBacklogMax = 4096;

  const MockOptions opts_;
  std::deque<std::vector<uint8_t>> backlog_;
  std::deque<DeviceChain> rxBuffers_;  // receive chains waiting for a frame
};

}  // namespace vdpa
