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

BlkExecutor::BlkExecutor(const BlkParams& params, uint64_t capacity, BlkStorage* storage, const std::string& what)
    : params_(params), storage_(storage), size_(capacity) {
  if (capacity == 0 || capacity % 512 != 0)
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
  c.capacity = capacity() / 512;
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

uint32_t BlkExecutor::answer(const DeviceChain& chain, uint8_t status, uint32_t written) {
  copyToBuffers(chain.writable, chain.writableBytes - 1, &status, 1);
  return written + 1;
}

BlkRequest BlkExecutor::parse(const DeviceChain& chain) {
  BlkRequest req;
  // The header is device-readable; the status is the last device-writable byte.
  if (chain.readableBytes < kHeaderBytes || chain.writableBytes < 1) return req;  // nothing sane to answer into
  VirtioBlkReqHeader hdr;
  copyFromBuffers(chain.readable, 0, &hdr, sizeof hdr);
  const uint64_t dataOut = chain.readableBytes - kHeaderBytes;
  const uint64_t dataIn = chain.writableBytes - 1;
  const uint64_t size = capacity();  // one value for the whole request (a resize may run meanwhile)
  const uint64_t sector = hdr.sector;
  const uint64_t offset = sector * 512;
  const bool inRange = sector <= size / 512 && offset <= size;
  req.offset = offset;
  switch (hdr.type) {
    case kTypeIn:
      if (dataIn % 512 || !inRange || dataIn > size - offset) break;
      req.op = BlkRequest::Op::kRead;
      req.length = dataIn;
      return req;
    case kTypeOut:
      if (params_.readOnly || dataOut % 512 || !inRange || dataOut > size - offset) break;
      req.op = BlkRequest::Op::kWrite;
      req.length = dataOut;
      return req;
    case kTypeFlush:
      req.op = BlkRequest::Op::kFlush;
      return req;
    case kTypeGetId: {
      char id[kIdBytes] = {};
      std::memcpy(id, params_.serial.data(), std::min(params_.serial.size(), kIdBytes));
      const size_t n = std::min<uint64_t>(dataIn, kIdBytes);
      copyToBuffers(chain.writable, 0, id, n);
      req.usedLen = answer(chain, kStatusOk, static_cast<uint32_t>(n));
      return req;
    }
    case kTypeDiscard:
    case kTypeWriteZeroes:
      if (params_.readOnly || !parseRanges(chain, dataOut, size, hdr.type == kTypeDiscard, req)) break;
      req.op = hdr.type == kTypeDiscard ? BlkRequest::Op::kDiscard : BlkRequest::Op::kWriteZeroes;
      return req;
    default:
      req.usedLen = answer(chain, kStatusUnsupported, 0);
      return req;
  }
  req.usedLen = answer(chain, kStatusIoErr, 0);
  return req;
}

bool BlkExecutor::parseRanges(const DeviceChain& chain, uint64_t dataOut, uint64_t size, bool discard,
                              BlkRequest& req) {
  constexpr uint64_t kSeg = sizeof(VirtioBlkDiscardSegment);
  if (dataOut == 0 || dataOut % kSeg || dataOut / kSeg > kMaxDiscardSeg) return false;
  for (uint64_t off = 0; off < dataOut; off += kSeg) {
    VirtioBlkDiscardSegment seg;
    copyFromBuffers(chain.readable, kHeaderBytes + off, &seg, kSeg);
    const uint64_t sector = seg.sector;
    const uint32_t count = seg.num_sectors;
    if (count > kMaxDiscardSectors || sector > size / 512 || count > size / 512 - sector) return false;
    // Discarded ranges read back as zeroes too (the mock's tests rely on it).
    req.ranges.push_back({sector * 512, uint64_t{count} * 512, discard || (seg.flags & kWriteZeroesUnmap) != 0});
  }
  return true;
}

uint32_t BlkExecutor::finish(const DeviceChain& chain, const BlkRequest& req, bool ok) {
  const bool read = req.op == BlkRequest::Op::kRead;
  return answer(chain, ok ? kStatusOk : kStatusIoErr, ok && read ? static_cast<uint32_t>(req.length) : 0);
}

void BlkExecutor::copyWriteData(const DeviceChain& chain, const BlkRequest& req, uint8_t* dst) const {
  copyFromBuffers(chain.readable, kHeaderBytes, dst, req.length);
}

void BlkExecutor::copyReadData(const DeviceChain& chain, const BlkRequest& req, const uint8_t* src) const {
  copyToBuffers(chain.writable, 0, src, req.length);
}

uint32_t BlkExecutor::handle(const DeviceChain& chain) {
  const BlkRequest req = parse(chain);
  if (req.op == BlkRequest::Op::kDone) return req.usedLen;
  if (!storage_) return finish(chain, req, false);
  int err = 0;
  switch (req.op) {
    case BlkRequest::Op::kDone:
      break;
    case BlkRequest::Op::kRead:
      buffersToIovecs(chain.writable, 0, req.length, iov_);
      err = storage_->read(req.offset, iov_);
      break;
    case BlkRequest::Op::kWrite:
      buffersToIovecs(chain.readable, kHeaderBytes, req.length, iov_);
      err = storage_->write(req.offset, iov_);
      break;
    case BlkRequest::Op::kFlush:
      err = storage_->flush();
      break;
    case BlkRequest::Op::kDiscard:
    case BlkRequest::Op::kWriteZeroes:
      for (const auto& r : req.ranges)
        if (!err) err = storage_->zero(r.offset, r.length, r.unmap);
      break;
  }
  return finish(chain, req, err == 0);
}

}  // namespace vdpa
