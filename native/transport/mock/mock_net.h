// mock:net — a loopback NIC: every frame sent on the transmit queue comes back on the receive queue.
#pragma once

#include <deque>

#include "ring/virtio_config.h"
#include "transport/mock/mock_model.h"

namespace vdpa {

constexpr unsigned kNetFMtu = 3, kNetFMac = 5, kNetFStatus = 16;

class MockNet final : public MockModel {
 public:
  explicit MockNet(const MockOptions& opts) : opts_(opts), maxFrame_(opts.mtu + kEthHeader + kVlanTag) {}

  uint32_t deviceId() const override { return deviceTypeId(VirtioDeviceType::kNet); }
  uint64_t features() const override { return bit(kNetFMtu) | bit(kNetFMac) | bit(kNetFStatus); }
  uint16_t numQueues() const override { return 2; }  // kRxQueue, kTxQueue
  std::vector<uint8_t> config() const override;
  bool handle(uint16_t q, const DeviceChain& chain, uint32_t* usedLen) override;
  bool accepts(uint16_t q) const override { return q != kTxQueue || backlogBytes_ < kBacklogBytes; }
  void drainDeferred(uint16_t q, std::vector<UsedEntry>& done) override;
  void reset() override {
    backlog_.clear();
    backlogBytes_ = 0;
    rxBuffers_.clear();
  }

 private:
  static constexpr uint16_t kRxQueue = 0, kTxQueue = 1;
  static constexpr uint32_t kEthHeader = 14, kVlanTag = 4;
  // Frames sent but not yet received, bounded in bytes. Nothing is dropped: past the bound the
  // device takes no more transmit chains until receive buffers drain the backlog, so a full
  // receive side holds the sender back, as a flow-controlled link does.
  static constexpr size_t kBacklogBytes = size_t{1} << 20;

  const MockOptions opts_;
  // Longest frame the link carries: the MTU plus the Ethernet header (the virtio-net packet size
  // rule), plus a VLAN tag, which receive buffers have room for.
  const uint32_t maxFrame_;
  std::deque<std::vector<uint8_t>> backlog_;
  size_t backlogBytes_ = 0;
  std::deque<DeviceChain> rxBuffers_;  // receive chains waiting for a frame
};

}  // namespace vdpa
