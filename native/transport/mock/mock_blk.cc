#include "transport/mock/mock_blk.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>

#include "common/sys_error.h"
#include "ring/virtio_ring.h"

namespace vdpa {

namespace {
constexpr uint32_t kTypeIn = 0, kTypeOut = 1, kTypeFlush = 4, kTypeGetId = 8, kTypeDiscard = 11, kTypeWriteZeroes = 13;
constexpr uint8_t kStatusOk = 0, kStatusIoErr = 1, kStatusUnsupported = 2;
constexpr uint32_t kMaxDiscardSectors = 1u << 16, kMaxDiscardSeg = 16;
constexpr size_t kIdBytes = 20;  // virtio-blk GET_ID answer size

template <typename T>
void put(std::vector<uint8_t>& v, size_t off, T value) {
  std::memcpy(v.data() + off, &value, sizeof value);
}
}  // namespace

MockBlk::MockBlk(const MockOptions& opts) : opts_(opts) {
  if (opts.capacity == 0 || opts.capacity % 512 != 0)
    throwSys(EINVAL, "open", "mock:blk", "capacity must be a non-zero multiple of 512 bytes");
  if (opts.numQueues == 0) throwSys(EINVAL, "open", "mock:blk", "numQueues must be at least 1");
  size_ = opts.capacity;
  void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throwErrno("mmap", "mock:blk", "capacity too large for this machine");
  disk_ = static_cast<uint8_t*>(p);
}

MockBlk::~MockBlk() { ::munmap(disk_, size_); }

uint64_t MockBlk::features() const {
  uint64_t f = bit(kBlkFSizeMax) | bit(kBlkFSegMax) | bit(kBlkFBlkSize) | bit(kBlkFFlush) | bit(kBlkFDiscard) |
               bit(kBlkFWriteZeroes);
  if (opts_.numQueues > 1) f |= bit(kBlkFMq);
  if (opts_.readOnly) f |= bit(kBlkFRo);
  return f;
}

std::vector<uint8_t> MockBlk::config() const {
  std::vector<uint8_t> c(60, 0);
  put<uint64_t>(c, 0, size_ / 512);
  put<uint32_t>(c, 8, opts_.sizeMax);
  put<uint32_t>(c, 12, opts_.segMax);
  put<uint32_t>(c, 20, opts_.blockSize);
  put<uint16_t>(c, 34, opts_.numQueues);
  put<uint32_t>(c, 36, kMaxDiscardSectors);
  put<uint32_t>(c, 40, kMaxDiscardSeg);
  put<uint32_t>(c, 44, opts_.blockSize / 512);
  put<uint32_t>(c, 48, kMaxDiscardSectors);
  put<uint32_t>(c, 52, kMaxDiscardSeg);
  c[56] = 1;
  return c;
}

bool MockBlk::handle(uint16_t, const DeviceChain& chain, uint32_t* usedLen) {
  *usedLen = 0;
  // Header is 16 device-readable bytes; status is the last device-writable byte.
  if (chain.readableBytes < 16 || chain.writableBytes < 1) return true;  // nothing sane to answer into
  uint8_t hdr[16];
  copyFromBuffers(chain.readable, 0, hdr, 16);
  uint32_t type;
  uint64_t sector;
  std::memcpy(&type, hdr, 4);
  std::memcpy(&sector, hdr + 8, 8);
  const uint64_t dataOut = chain.readableBytes - 16;
  const uint64_t dataIn = chain.writableBytes - 1;
  uint32_t written = 0;
  const uint8_t status = execute(type, sector, chain, dataIn, dataOut, &written);
  copyToBuffers(chain.writable, dataIn, &status, 1);
  *usedLen = written + 1;
  return true;
}

uint8_t MockBlk::execute(uint32_t type, uint64_t sector, const DeviceChain& chain, uint64_t dataIn, uint64_t dataOut,
                         uint32_t* written) {
  const uint64_t offset = sector * 512;
  const bool inRange = sector <= size_ / 512 && offset <= size_;
  switch (type) {
    case kTypeIn:
      if (dataIn % 512 || !inRange || dataIn > size_ - offset) return kStatusIoErr;
      copyToBuffers(chain.writable, 0, disk_ + offset, dataIn);
      *written = static_cast<uint32_t>(dataIn);
      return kStatusOk;
    case kTypeOut:
      if (opts_.readOnly) return kStatusIoErr;
      if (dataOut % 512 || !inRange || dataOut > size_ - offset) return kStatusIoErr;
      copyFromBuffers(chain.readable, 16, disk_ + offset, dataOut);
      return kStatusOk;
    case kTypeFlush:
      return kStatusOk;
    case kTypeGetId: {
      char id[kIdBytes + 12] = {};
      std::snprintf(id, sizeof id, "vdpa-mock-%08llx", static_cast<unsigned long long>((size_ >> 9) & 0xffffffffu));
      const size_t n = std::min<uint64_t>(dataIn, kIdBytes);
      copyToBuffers(chain.writable, 0, id, n);
      *written = static_cast<uint32_t>(n);
      return kStatusOk;
    }
    case kTypeDiscard:
    case kTypeWriteZeroes:
      if (opts_.readOnly) return kStatusIoErr;
      return zeroRanges(chain, dataOut);
    default:
      return kStatusUnsupported;
  }
}

uint8_t MockBlk::zeroRanges(const DeviceChain& chain, uint64_t dataOut) {
  // Payload: segments of { le64 sector; le32 num_sectors; le32 flags }.
  if (dataOut == 0 || dataOut % 16 || dataOut / 16 > kMaxDiscardSeg) return kStatusIoErr;
  for (uint64_t off = 0; off < dataOut; off += 16) {
    uint8_t seg[16];
    copyFromBuffers(chain.readable, 16 + off, seg, 16);
    uint64_t sector;
    uint32_t count;
    std::memcpy(&sector, seg, 8);
    std::memcpy(&count, seg + 8, 4);
    if (count > kMaxDiscardSectors || sector > size_ / 512 || count > size_ / 512 - sector) return kStatusIoErr;
    // A RAM disk has nothing to gain from a discard: both read back as zeroes.
    std::memset(disk_ + sector * 512, 0, uint64_t{count} * 512);
  }
  return kStatusOk;
}

}  // namespace vdpa
