// The virtio-blk request executor: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES over a BlkStorage,
// with the device's features and config space (its capacity may change: setCapacity). Every request is checked (header
// and status present, whole sectors, inside the disk, segment counts) before the storage sees it. Used by the mock's
// blk model and by the VDUSE blk device; one device thread calls handle() at a time.
#pragma once

#include <atomic>
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

// A request parsed and checked, before the storage sees it.
struct BlkRequest {
  enum class Op { kDone, kRead, kWrite, kFlush, kDiscard, kWriteZeroes };
  Op op = Op::kDone;
  uint64_t offset = 0;  // bytes (read, write)
  uint64_t length = 0;  // bytes of data (read, write)
  // Discard / write zeroes: byte ranges, and per range whether its space may be given back.
  struct Range {
    uint64_t offset, length;
    bool unmap;
  };
  std::vector<Range> ranges;
  uint32_t usedLen = 0;  // kDone: the answer is already written
};

class BlkExecutor {
 public:
  // `storage` outlives the executor; without one (a backend that answers later) only parse() and
  // finish() may be used. EINVAL (naming `what`) for parameters no device can have.
  BlkExecutor(const BlkParams& params, uint64_t capacity, BlkStorage* storage, const std::string& what);

  uint64_t features() const;  // device-specific bits only
  uint64_t capacity() const { return size_.load(std::memory_order_acquire); }
  // Any thread: requests parsed from now on are checked against `bytes` (a non-zero multiple of 512;
  // the storage must already hold that much). Requests in flight keep the check they had.
  void setCapacity(uint64_t bytes) { size_.store(bytes, std::memory_order_release); }
  std::vector<uint8_t> config() const;
  // Executes one request chain; returns the used length (data written + the status byte; 0 for a
  // chain without room for header and status, which gets no answer).
  uint32_t handle(const DeviceChain& chain);

  // The two halves of handle() for a backend that answers later (a JS handler): parse() answers what
  // needs no storage (bad requests, GET_ID) at once (op kDone); finish() writes the status of the rest
  // (the data of a read is already in the chain) and returns the used length.
  BlkRequest parse(const DeviceChain& chain);
  uint32_t finish(const DeviceChain& chain, const BlkRequest& req, bool ok);
  // The data of a write request, and the data answering a read (`src` holds req.length bytes).
  void copyWriteData(const DeviceChain& chain, const BlkRequest& req, uint8_t* dst) const;
  void copyReadData(const DeviceChain& chain, const BlkRequest& req, const uint8_t* src) const;

 private:
  uint32_t answer(const DeviceChain& chain, uint8_t status, uint32_t written);
  bool parseRanges(const DeviceChain& chain, uint64_t dataOut, uint64_t size, bool discard, BlkRequest& req);

  const BlkParams params_;
  BlkStorage* const storage_;
  std::atomic<uint64_t> size_;
  std::vector<iovec> iov_;  // reused per request
};

}  // namespace vdpa
