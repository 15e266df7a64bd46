#include "vduse/vduse_blk.h"

#include "ring/virtio_config.h"

namespace vdpa {

VduseBlk::VduseBlk(const VduseBlkOptions& opts, Submit submit) : submit_(std::move(submit)) {
  const std::string what = "vduse:" + opts.name;
  if (!submit_ && opts.file.empty())
    storage_ = std::make_unique<RamStorage>(opts.capacity, what);
  else if (!submit_)
    storage_ = std::make_unique<FileStorage>(opts.file, opts.params.readOnly);
  capacity_ = storage_ ? storage_->size() : opts.capacity;
  executor_ = std::make_unique<BlkExecutor>(opts.params, capacity_, storage_.get(), what);
  VduseDeviceConfig cfg;
  cfg.name = opts.name;
  cfg.controlPath = opts.controlPath;
  cfg.deviceId = deviceTypeId(VirtioDeviceType::kBlock);
  cfg.vendorId = opts.vendorId;
  cfg.features = executor_->features();
  cfg.numQueues = opts.params.numQueues;
  cfg.maxQueueSize = opts.queueSize;
  cfg.config = executor_->config();
  cfg.reconnect = opts.reconnect;
  ChainHandler handler;
  if (submit_)
    handler = [this](uint16_t, const DeviceChain& chain, uint64_t token) { return handleDeferred(chain, token); };
  else
    handler = [this](uint16_t, const DeviceChain& chain, uint64_t) { return executor_->handle(chain); };
  device_ = std::make_unique<VduseDevice>(cfg, std::move(handler));
}

uint32_t VduseBlk::handleDeferred(const DeviceChain& chain, uint64_t token) {
  BlkRequest req = executor_->parse(chain);
  if (req.op == BlkRequest::Op::kDone) return req.usedLen;
  std::vector<uint8_t> data;
  if (req.op == BlkRequest::Op::kWrite) {
    data.resize(req.length);
    executor_->copyWriteData(chain, req, data.data());
  }
  {
    std::lock_guard<std::mutex> lock(inflightLock_);
    inflight_[token] = req;
  }
  submit_(token, req, std::move(data));
  return kDeferred;
}

void VduseBlk::complete(uint64_t token, bool ok, std::vector<uint8_t> data) {
  BlkRequest req;
  {
    std::lock_guard<std::mutex> lock(inflightLock_);
    auto it = inflight_.find(token);
    if (it == inflight_.end()) return;
    req = std::move(it->second);
    inflight_.erase(it);
  }
  device_->complete(token, [this, req = std::move(req), ok, data = std::move(data)](const DeviceChain& chain) {
    const bool read = req.op == BlkRequest::Op::kRead;
    const bool good = ok && (!read || data.size() == req.length);
    if (good && read) executor_->copyReadData(chain, req, data.data());
    return executor_->finish(chain, req, good);
  });
}

}  // namespace vdpa
