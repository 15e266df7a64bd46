// mock:blk — a RAM disk speaking virtio-blk: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES, multiqueue.
#pragma once

#include "ring/virtio_config.h"
#include "transport/mock/mock_model.h"

namespace vdpa {

// virtio-blk feature bits.
constexpr unsigned kBlkFSizeMax = 1, kBlkFSegMax = 2, kBlkFRo = 5, kBlkFBlkSize = 6, kBlkFFlush = 9, kBlkFMq = 12,
                   kBlkFDiscard = 13, kBlkFWriteZeroes = 14;

class MockBlk final : public MockModel {
 public:
  explicit MockBlk(const MockOptions& opts);
  ~MockBlk() override;

  uint32_t deviceId() const override { return deviceTypeId(VirtioDeviceType::kBlock); }
  uint64_t features() const override;
  uint16_t numQueues() const override { return opts_.numQueues; }
  std::vector<uint8_t> config() const override;
  bool handle(uint16_t q, const DeviceChain& chain, uint32_t* usedLen) override;

 private:
  uint8_t execute(uint32_t type, uint64_t sector, const DeviceChain& chain, uint64_t dataIn, uint64_t dataOut,
                  uint32_t* written);
  uint8_t zeroRanges(const DeviceChain& chain, uint64_t dataOut);
  void zero(uint64_t offset, uint64_t len);

  const MockOptions opts_;
  // Sparse: a private anonymous mapping without swap reservation. Pages appear as they are written
  // and go back to the kernel when discarded or zeroed, so a disk larger than RAM works as long as
  // what is written fits (more than that and the kernel's OOM killer decides).
  uint8_t* disk_ = nullptr;
  uint64_t size_ = 0;
  uint64_t pageSize_ = 4096;
};

}  // namespace vdpa
