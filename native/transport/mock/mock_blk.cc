#include "transport/mock/mock_blk.h"

#include <sys/mman.h>
#include <unistd.h>

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
// The mock offers neither SECURE_ERASE nor ZONED: its config space ends before their fields.
constexpr size_t kConfigSize = offsetof(VirtioBlkConfig, max_secure_erase_sectors);
constexpr uint64_t kHeaderBytes = sizeof(VirtioBlkReqHeader);
}  // namespace

MockBlk::MockBlk(const MockOptions& opts) : opts_(opts) {
  if (opts.capacity == 0 || opts.capacity % 512 != 0)
    throwSys(EINVAL, "open", "mock:blk", "capacity must be a non-zero multiple of 512 bytes");
  if (opts.numQueues == 0) throwSys(EINVAL, "open", "mock:blk", "numQueues must be at least 1");
  size_ = opts.capacity;
  void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throwErrno("mmap", "mock:blk",
               "capacity needs more address space than this process can map (the disk is sparse: only written data "
               "costs memory)");
  disk_ = static_cast<uint8_t*>(p);
  pageSize_ = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
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
  VirtioBlkConfig c{};
  c.capacity = size_ / 512;
  c.size_max = opts_.sizeMax;
  c.seg_max = opts_.segMax;
  c.blk_size = opts_.blockSize;
  c.num_queues = opts_.numQueues;
  c.max_discard_sectors = kMaxDiscardSectors;
  c.max_discard_seg = kMaxDiscardSeg;
  c.discard_sector_alignment = opts_.blockSize / 512;
  c.max_write_zeroes_sectors = kMaxDiscardSectors;
  c.max_write_zeroes_seg = kMaxDiscardSeg;
  c.write_zeroes_may_unmap = 1;
  std::vector<uint8_t> bytes(kConfigSize);
  std::memcpy(bytes.data(), &c, kConfigSize);
  return bytes;
}

bool MockBlk::handle(uint16_t, const DeviceChain& chain, uint32_t* usedLen) {
  *usedLen = 0;
  // The header is device-readable; the status is the last device-writable byte.
  if (chain.readableBytes < kHeaderBytes || chain.writableBytes < 1) return true;  // nothing sane to answer into
  VirtioBlkReqHeader hdr;
  copyFromBuffers(chain.readable, 0, &hdr, sizeof hdr);
  const uint32_t type = hdr.type;
  const uint64_t sector = hdr.sector;
  const uint64_t dataOut = chain.readableBytes - kHeaderBytes;
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
      copyFromBuffers(chain.readable, kHeaderBytes, disk_ + offset, dataOut);
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
  constexpr uint64_t kSeg = sizeof(VirtioBlkDiscardSegment);
  if (dataOut == 0 || dataOut % kSeg || dataOut / kSeg > kMaxDiscardSeg) return kStatusIoErr;
  for (uint64_t off = 0; off < dataOut; off += kSeg) {
    VirtioBlkDiscardSegment seg;
    copyFromBuffers(chain.readable, kHeaderBytes + off, &seg, kSeg);
    const uint64_t sector = seg.sector;
    const uint32_t count = seg.num_sectors;
    if (count > kMaxDiscardSectors || sector > size_ / 512 || count > size_ / 512 - sector) return kStatusIoErr;
    // Discard and write-zeroes both read back as zeroes here.
    zero(sector * 512, uint64_t{count} * 512);
  }
  return kStatusOk;
}

void MockBlk::zero(uint64_t offset, uint64_t len) {
  // Whole pages go back to the kernel (they read as zeroes again and cost nothing); only the
  // partial pages at either end are written.
  const uint64_t page = pageSize_;
  const uint64_t first = (offset + page - 1) / page * page;
  const uint64_t last = (offset + len) / page * page;
  if (first >= last || ::madvise(disk_ + first, last - first, MADV_DONTNEED) != 0) {
    std::memset(disk_ + offset, 0, len);
    return;
  }
  std::memset(disk_ + offset, 0, first - offset);
  std::memset(disk_ + last, 0, offset + len - last);
}

}  // namespace vdpa
