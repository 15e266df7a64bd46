// mock:blk — a RAM disk speaking virtio-blk (the shared executor of device_model/blk_executor.h over
// RamStorage): IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES, multiqueue.
#pragma once

#include <memory>

#include "device_model/blk_executor.h"
#include "device_model/blk_storage.h"
#include "ring/virtio_config.h"
#include "transport/mock/mock_model.h"

namespace vdpa {

class MockBlk final : public MockModel {
 public:
  explicit MockBlk(const MockOptions& opts);

  uint32_t deviceId() const override { return deviceTypeId(VirtioDeviceType::kBlock); }
  uint64_t features() const override { return executor_->features(); }
  uint16_t numQueues() const override { return numQueues_; }
  std::vector<uint8_t> config() const override { return executor_->config(); }
  bool handle(uint16_t q, const DeviceChain& chain, uint32_t* usedLen) override;

 private:
  const uint16_t numQueues_;
  std::unique_ptr<BlkStorage> disk_;
  std::unique_ptr<BlkExecutor> executor_;
};

}  // namespace vdpa
