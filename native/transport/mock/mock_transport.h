// The mock transport: an in-process virtio device. A device thread waits on the queues' kick eventfds,
// consumes chains with the device-side ring code, lets a model (blk, net) do the work, writes used
// entries and signals the call eventfds — the same protocol a vDPA device follows.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "memory/dma_mappings.h"
#include "ring/device_queue.h"
#include "ring/split_device_queue.h"
#include "transport/mock/mock_model.h"
#include "transport/transport.h"

namespace vdpa {

class MockTransport final : public Transport, private GuestMemory {
 public:
  // Fault names accepted in MockOptions::fault.
  static const std::vector<std::string>& faultNames();

  MockTransport(std::string path, const MockOptions& opts);
  ~MockTransport() override;

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
  void mapDma(uint64_t iova, void* host, uint64_t len) override;
  void unmapDma(uint64_t iova, uint64_t len) override;
  void setupQueue(const QueueAddresses& a, int callFd) override;
  void enableQueue(uint16_t index) override;
  void notify(uint16_t index) override;

 private:
  struct QueueState {
    QueueAddresses addr{};
    int callFd = -1;
    UniqueFd kickFd;
    bool enabled = false;
    std::unique_ptr<DeviceQueue> ring;  // split or packed, as negotiated
    bool dead = false;                  // malformed ring: the device stops using it
  };
  enum class Fault { kNone, kBadUsedId, kLongUsedLen, kUsedIdxJump, kStall, kResetInFlight, kNoFeaturesOk };

  uint8_t* translate(uint64_t iova, uint64_t len) override;
  void startThread();
  void stopThread();
  void deviceLoop();
  void serviceQueue(uint16_t index, std::vector<UsedEntry>& done);
  void complete(std::vector<UsedEntry>& done);
  void needsReset();

  const std::string path_;
  const MockOptions opts_;
  Fault fault_ = Fault::kNone;
  std::unique_ptr<MockModel> model_;
  std::atomic<uint8_t> status_{0};
  uint64_t driverFeatures_ = 0;
  std::vector<QueueState> queues_;
  UniqueFd configFd_;
  UniqueFd stopFd_;
  UniqueFd epollFd_;
  std::thread thread_;
  uint32_t completed_ = 0;  // for faultAfter; device thread only
  std::shared_mutex mapLock_;
  DmaMappings mappings_;
  DeviceChain chain_;  // reused per chain, device thread only
};

}  // namespace vdpa
