#include "transport/mock/mock_blk.h"

#include <cstdio>

#include "common/sys_error.h"

namespace vdpa {

namespace {

BlkParams blkParams(const MockOptions& opts) {
  BlkParams p;
  p.numQueues = opts.numQueues;
  p.segMax = opts.segMax;
  p.sizeMax = opts.sizeMax;
  p.blockSize = opts.blockSize;
  p.readOnly = opts.readOnly;
  char id[32];
  std::snprintf(id, sizeof id, "vdpa-mock-%08llx", static_cast<unsigned long long>((opts.capacity >> 9) & 0xffffffffu));
  p.serial = id;
  return p;
}

}  // namespace

MockBlk::MockBlk(const MockOptions& opts) : numQueues_(opts.numQueues) {
  if (opts.capacity == 0 || opts.capacity % 512 != 0)
    throwSys(EINVAL, "open", "mock:blk", "capacity must be a non-zero multiple of 512 bytes");
  if (opts.file.empty())
    disk_ = std::make_unique<RamStorage>(opts.capacity, "mock:blk");
  else
    disk_ = std::make_unique<FileStorage>(opts.file, opts.readOnly);
  executor_ = std::make_unique<BlkExecutor>(blkParams(opts), disk_->size(), disk_.get(), "mock:blk");
}

bool MockBlk::handle(uint16_t, const DeviceChain& chain, uint32_t* usedLen) {
  *usedLen = executor_->handle(chain);
  return true;
}

}  // namespace vdpa
