// The mock transport: an in-process virtio device, control side. It keeps the registers a driver
// reads and writes (features, status, config) and hands queues, DMA mappings and the start of the
// device to MockDevice, which plays the device behind them — the same protocol a vDPA device follows.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "transport/mock/mock_device.h"
#include "transport/mock/mock_model.h"
#include "transport/transport.h"

namespace vdpa {

class MockTransport final : public Transport {
 public:
  // Fault names accepted in MockOptions::fault.
  static const std::vector<std::string>& faultNames() { return MockDevice::faultNames(); }

  MockTransport(std::string path, const MockOptions& opts);
  ~MockTransport() override = default;

  const char* kind() const override { return "mock"; }
  const std::string& path() const override { return path_; }
  uint32_t deviceId() override { return model_->deviceId(); }
  uint32_t vendorId() override { return 0x1af4; }
  uint64_t deviceFeatures() override;
  void setDriverFeatures(uint64_t features) override;
  uint8_t status() override { return status_.load(); }
  void setStatus(uint8_t status) override;
  void reset() override;
  uint32_t configSize() override;
  void readConfig(uint32_t offset, void* buf, uint32_t len) override;
  void writeConfig(uint32_t offset, const void* buf, uint32_t len) override;
  int configChangeFd() override { return configFd_.get(); }
  uint16_t maxQueues() override { return model_->numQueues(); }
  uint16_t maxQueueSize(uint16_t) override { return opts_.maxQueueSize; }
  IovaRange iovaRange() override { return {0, (uint64_t{1} << 48) - 1}; }
  uint64_t iovaAlignment() override { return 4096; }
  void mapDma(uint64_t iova, void* host, uint64_t len) override { device_->mapDma(iova, host, len); }
  void unmapDma(uint64_t iova, uint64_t len) override { device_->unmapDma(iova, len); }
  bool dmaUpdatesNeedQuiesce() const override { return opts_.strictDmaUpdates; }
  void setupQueue(const QueueAddresses& a, int callFd) override;
  void enableQueue(uint16_t index) override { device_->enableQueue(index); }
  void notify(uint16_t index) override { device_->kick(index); }
  bool canSuspend() override { return opts_.suspend || opts_.failSuspend; }
  void suspend() override;

 private:
  // The device gave up on its rings (device thread): NEEDS_RESET, and a configuration interrupt.
  void needsReset();

  const std::string path_;
  const MockOptions opts_;
  std::unique_ptr<MockModel> model_;
  std::atomic<uint8_t> status_{0};
  uint64_t driverFeatures_ = 0;
  UniqueFd configFd_;
  std::unique_ptr<MockDevice> device_;  // uses model_ and configFd_: declared after them
};

}  // namespace vdpa
