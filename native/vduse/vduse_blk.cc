#include "vduse/vduse_blk.h"

#include "ring/virtio_config.h"

namespace vdpa {

VduseBlk::VduseBlk(const VduseBlkOptions& opts) {
  const std::string what = "vduse:" + opts.name;
  if (opts.file.empty())
    storage_ = std::make_unique<RamStorage>(opts.capacity, what);
  else
    storage_ = std::make_unique<FileStorage>(opts.file, opts.params.readOnly);
  executor_ = std::make_unique<BlkExecutor>(opts.params, *storage_, what);
  VduseDeviceConfig cfg;
  cfg.name = opts.name;
  cfg.controlPath = opts.controlPath;
  cfg.deviceId = deviceTypeId(VirtioDeviceType::kBlock);
  cfg.features = executor_->features();
  cfg.numQueues = opts.params.numQueues;
  cfg.maxQueueSize = opts.queueSize;
  cfg.config = executor_->config();
  BlkExecutor* executor = executor_.get();
  device_ = std::make_unique<VduseDevice>(
      cfg, [executor](uint16_t, const DeviceChain& chain) { return executor->handle(chain); });
}

}  // namespace vdpa
