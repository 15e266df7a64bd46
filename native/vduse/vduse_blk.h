// A virtio-blk device served through VDUSE: the shared blk executor over a RAM or file backend.
#pragma once

#include <memory>
#include <string>

#include "device_model/blk_executor.h"
#include "device_model/blk_storage.h"
#include "vduse/vduse_device.h"

namespace vdpa {

struct VduseBlkOptions {
  std::string name;
  std::string controlPath = "/dev/vduse/control";
  std::string file;       // empty: RAM
  uint64_t capacity = 0;  // RAM only (bytes, a multiple of 512)
  BlkParams params;
  uint16_t queueSize = 256;
};

class VduseBlk {
 public:
  explicit VduseBlk(const VduseBlkOptions& opts);

  VduseDevice& device() { return *device_; }
  uint64_t capacity() const { return storage_->size(); }

 private:
  std::unique_ptr<BlkStorage> storage_;
  std::unique_ptr<BlkExecutor> executor_;
  std::unique_ptr<VduseDevice> device_;  // last: its thread stops before the executor goes
};

}  // namespace vdpa
