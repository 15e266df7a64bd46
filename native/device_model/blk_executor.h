// The virtio-blk request executor: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES over a BlkStorage,
// with the device's features and config space. Every request is checked (header and status present,
// whole sectors, inside the disk, segment counts) before the storage sees it. Used by the mock's blk
// model and by the VDUSE blk device; one device thread calls handle() at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "device_model/blk_storage.h"
#include "ring/device_queue.h"

namespace vdpa {

// virtio-blk feature bits.
constexpr unsigned kBlkFSizeMax = 1, kBlkFSegMax = 2, kBlkFRo = 5, kBlkFBlkSize = 6, kBlkFFlush = 9, kBlkFMq = 12,
                   kBlkFDiscard = 13, kBlkFWriteZeroes = 14;

struct BlkParams {
  uint16_t numQueues = 1;
  uint32_t segMax = 126;        // data segments per request
  uint32_t sizeMax = 1u << 20;  // bytes per segment
  uint32_t blockSize = 512;
  bool readOnly = false;
  std::string serial;  // the GET_ID answer (at most 20 bytes are sent)
};

class BlkExecutor {
 public:
  // `storage` outlives the executor. EINVAL (naming `what`) for parameters no device can have.
  BlkExecutor(const BlkParams& params, BlkStorage& storage, const std::string& what);

  uint64_t features() const;  // device-specific bits only
  std::vector<uint8_t> config() const;
  // Executes one request chain; returns the used length (data written + the status byte; 0 for a
  // chain without room for header and status, which gets no answer).
  uint32_t handle(const DeviceChain& chain);

 private:
  uint8_t execute(uint32_t type, uint64_t sector, const DeviceChain& chain, uint64_t dataIn, uint64_t dataOut,
                  uint32_t* written);
  uint8_t zeroRanges(const DeviceChain& chain, uint64_t dataOut, bool discard);

  const BlkParams params_;
  BlkStorage& storage_;
  const uint64_t size_;
  std::vector<iovec> iov_;  // reused per request
};

}  // namespace vdpa
