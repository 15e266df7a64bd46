#include "device_model/blk_executor.h"

#include <algorithm>
#include <cstring>

#include "common/sys_error.h"
#include "device_model/chain_bytes.h"
#include "ring/virtio_config.h"
#include "ring/virtio_ring.h"

namespace vdpa {

namespace {
constexpr uint32_t kTypeIn = 0, kTypeOut = 1, kTypeFlush = 4, kTypeGetId = 8, kTypeDiscard = 11, kTypeWriteZeroes = 13;
constexpr uint8_t kStatusOk = 0, kStatusIoErr = 1, kStatusUnsupported = 2;
constexpr uint32_t kMaxDiscardSectors = 1u << 16, kMaxDiscardSeg = 16;
constexpr uint32_t kWriteZeroesUnmap = 1;
constexpr size_t kIdBytes = 20;  // virtio-blk GET_ID answer size
// Neither SECURE_ERASE nor ZONED is offered: the config space ends before their fields.
constexpr size_t kConfigSize = offsetof(VirtioBlkConfig, max_secure_erase_sectors);
constexpr uint64_t kHeaderBytes = sizeof(VirtioBlkReqHeader);
}  // namespace

BlkExecutor::BlkExecutor(const BlkParams& params, BlkStorage& storage, const std::string& what)
    : params_(params), storage_(storage), size_(storage.size()) {
  if (size_ == 0 || size_ % 512 != 0)
    throwSys(EINVAL, "open", what, "capacity must be a non-zero multiple of 512 bytes");
  if (params.numQueues == 0) throwSys(EINVAL, "open", what, "numQueues must be at least 1");
}

uint64_t BlkExecutor::features() const {
  uint64_t f = bit(kBlkFSizeMax) | bit(kBlkFSegMax) | bit(kBlkFBlkSize) | bit(kBlkFFlush) | bit(kBlkFDiscard) |
               bit(kBlkFWriteZeroes);
  if (params_.numQueues > 1) f |= bit(kBlkFMq);
  if (params_.readOnly) f |= bit(kBlkFRo);
  return f;
}

std::vector<uint8_t> BlkExecutor::config() const {
  VirtioBlkConfig c{};
  c.capacity = size_ / 512;
  c.size_max = params_.sizeMax;
  c.seg_max = params_.segMax;
  c.blk_size = params_.blockSize;
  c.num_queues = params_.numQueues;
  c.max_discard_sectors = kMaxDiscardSectors;
  c.max_discard_seg = kMaxDiscardSeg;
  c.discard_sector_alignment = params_.blockSize / 512;
  c.max_write_zeroes_sectors = kMaxDiscardSectors;
  c.max_write_zeroes_seg = kMaxDiscardSeg;
  c.write_zeroes_may_unmap = 1;
  std::vector<uint8_t> bytes(kConfigSize);
  std::memcpy(bytes.data(), &c, kConfigSize);
  return bytes;
}

uint32_t BlkExecutor::handle(const DeviceChain& chain) {
  // The header is device-readable; the status is the last device-writable byte.
  if (chain.readableBytes < kHeaderBytes || chain.writableBytes < 1) return 0;  // nothing sane to answer into
  VirtioBlkReqHeader hdr;
  copyFromBuffers(chain.readable, 0, &hdr, sizeof hdr);
  const uint64_t dataOut = chain.readableBytes - kHeaderBytes;
  const uint64_t dataIn = chain.writableBytes - 1;
  uint32_t written = 0;
  const uint8_t status = execute(hdr.type, hdr.sector, chain, dataIn, dataOut, &written);
  copyToBuffers(chain.writable, dataIn, &status, 1);
  return written + 1;
}

uint8_t BlkExecutor::execute(uint32_t type, uint64_t sector, const DeviceChain& chain, uint64_t dataIn,
                             uint64_t dataOut, uint32_t* written) {
  const uint64_t offset = sector * 512;
  const bool inRange = sector <= size_ / 512 && offset <= size_;
  switch (type) {
    case kTypeIn:
      if (dataIn % 512 || !inRange || dataIn > size_ - offset) return kStatusIoErr;
      buffersToIovecs(chain.writable, 0, dataIn, iov_);
      if (storage_.read(offset, iov_) != 0) return kStatusIoErr;
      *written = static_cast<uint32_t>(dataIn);
      return kStatusOk;
    case kTypeOut:
      if (params_.readOnly) return kStatusIoErr;
      if (dataOut % 512 || !inRange || dataOut > size_ - offset) return kStatusIoErr;
      buffersToIovecs(chain.readable, kHeaderBytes, dataOut, iov_);
      return storage_.write(offset, iov_) == 0 ? kStatusOk : kStatusIoErr;
    case kTypeFlush:
      return storage_.flush() == 0 ? kStatusOk : kStatusIoErr;
    case kTypeGetId: {
      char id[kIdBytes] = {};
      std::memcpy(id, params_.serial.data(), std::min(params_.serial.size(), kIdBytes));
      const size_t n = std::min<uint64_t>(dataIn, kIdBytes);
      copyToBuffers(chain.writable, 0, id, n);
      *written = static_cast<uint32_t>(n);
      return kStatusOk;
    }
    case kTypeDiscard:
    case kTypeWriteZeroes:
      if (params_.readOnly) return kStatusIoErr;
      return zeroRanges(chain, dataOut, type == kTypeDiscard);
    default:
      return kStatusUnsupported;
  }
}

uint8_t BlkExecutor::zeroRanges(const DeviceChain& chain, uint64_t dataOut, bool discard) {
  constexpr uint64_t kSeg = sizeof(VirtioBlkDiscardSegment);
  if (dataOut == 0 || dataOut % kSeg || dataOut / kSeg > kMaxDiscardSeg) return kStatusIoErr;
  for (uint64_t off = 0; off < dataOut; off += kSeg) {
    VirtioBlkDiscardSegment seg;
    copyFromBuffers(chain.readable, kHeaderBytes + off, &seg, kSeg);
    const uint64_t sector = seg.sector;
    const uint32_t count = seg.num_sectors;
    if (count > kMaxDiscardSectors || sector > size_ / 512 || count > size_ / 512 - sector) return kStatusIoErr;
    // Discarded ranges read back as zeroes too (the mock's tests rely on it).
    const bool unmap = discard || (seg.flags & kWriteZeroesUnmap) != 0;
    if (storage_.zero(sector * 512, uint64_t{count} * 512, unmap) != 0) return kStatusIoErr;
  }
  return kStatusOk;
}

}  // namespace vdpa
