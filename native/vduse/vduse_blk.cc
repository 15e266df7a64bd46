#include "vduse/vduse_blk.h"

#include <cstddef>

#include "common/sys_error.h"
#include "ring/virtio_config.h"

namespace vdpa {

namespace {
// Requests a file disk has in the kernel at once. Threads start as requests wait (one per request
// at most), so a fast file (page cache, tmpfs) uses few and a slow one (network file systems, disks
// without a cache) up to this many.
constexpr unsigned kFileThreads = 32;
}  // namespace

VduseBlk::VduseBlk(const VduseBlkOptions& opts, Submit submit) : submit_(std::move(submit)) {
  const std::string what = "vduse:" + opts.name;
  if (!submit_ && opts.file.empty())
    storage_ = std::make_unique<RamStorage>(opts.capacity, what);
  else if (!submit_)
    storage_ = std::make_unique<FileStorage>(opts.file, opts.params.readOnly);
  const uint64_t capacity = storage_ ? storage_->size() : opts.capacity;
  executor_ = std::make_unique<BlkExecutor>(opts.params, capacity, storage_.get(), what);
  const bool file = !submit_ && !opts.file.empty();
  if (file) {
    workers_ = std::make_unique<BlkWorkers>(
        *storage_, kFileThreads,
        [this](uint64_t token, bool ok, std::vector<uint8_t> data) { complete(token, ok, std::move(data)); });
    order_ = std::make_unique<Order[]>(opts.params.numQueues);
    submit_ = [this](uint64_t token, const BlkRequest& req, std::vector<uint8_t> data) {
      workers_->submit(token, req, std::move(data));
    };
  }
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
  if (submit_) {
    handler = [this](uint16_t queue, const DeviceChain& chain, uint64_t token) {
      return handleDeferred(queue, chain, token);
    };
  } else {
    handler = [this](uint16_t, const DeviceChain& chain, uint64_t) {
      std::lock_guard<std::mutex> lock(storageLock_);
      return executor_->handle(chain);
    };
  }
  device_ = std::make_unique<VduseDevice>(cfg, std::move(handler));
}

VduseBlk::~VduseBlk() {
  // The I/O threads first (what they finish still reaches the device object), then the device thread.
  if (workers_) workers_->stop();
  device_.reset();
}

uint32_t VduseBlk::handleDeferred(uint16_t queue, const DeviceChain& chain, uint64_t token) {
  BlkRequest req = executor_->parse(chain);
  if (req.op == BlkRequest::Op::kDone) {
    if (!order_) return req.usedLen;
    // Answered already (bad request, GET_ID), but it goes back after the requests before it.
    Order& o = order_[queue];
    std::lock_guard<std::mutex> lock(o.lock);
    if (o.slots.empty()) return req.usedLen;
    const uint32_t len = req.usedLen;
    o.slots.push_back(Slot{token, true, [len](const DeviceChain&) { return len; }});
    return kDeferred;
  }
  std::vector<uint8_t> data;
  if (req.op == BlkRequest::Op::kWrite) {
    data.resize(req.length);
    executor_->copyWriteData(chain, req, data.data());
  }
  if (order_) {
    Order& o = order_[queue];
    std::lock_guard<std::mutex> lock(o.lock);
    o.slots.push_back(Slot{token, false, nullptr});
  }
  {
    std::lock_guard<std::mutex> lock(inflightLock_);
    inflight_[token] = Inflight{queue, req};
  }
  submit_(token, req, std::move(data));
  return kDeferred;
}

void VduseBlk::complete(uint64_t token, bool ok, std::vector<uint8_t> data) {
  Inflight f;
  {
    std::lock_guard<std::mutex> lock(inflightLock_);
    auto it = inflight_.find(token);
    if (it == inflight_.end()) return;
    f = std::move(it->second);
    inflight_.erase(it);
  }
  // Runs on the device thread, while the chain's buffers are mapped.
  ChainFinish finish = [this, req = std::move(f.req), ok, data = std::move(data)](const DeviceChain& chain) {
    const bool read = req.op == BlkRequest::Op::kRead;
    const bool good = ok && (!read || data.size() == req.length);
    if (good && read) executor_->copyReadData(chain, req, data.data());
    return executor_->finish(chain, req, good);
  };
  if (order_)
    finishInOrder(f.queue, token, std::move(finish));
  else
    device_->complete(token, std::move(finish));
}

void VduseBlk::finishInOrder(uint16_t queue, uint64_t token, ChainFinish finish) {
  Order& o = order_[queue];
  std::lock_guard<std::mutex> lock(o.lock);
  for (Slot& s : o.slots) {
    if (s.token != token) continue;
    s.done = true;
    s.finish = std::move(finish);
    break;
  }
  // Handed to the device under the lock: the device thread finishes them in the order they arrive.
  while (!o.slots.empty() && o.slots.front().done) {
    device_->complete(o.slots.front().token, std::move(o.slots.front().finish));
    o.slots.pop_front();
  }
}

void VduseBlk::resize(uint64_t bytes) {
  const std::string path = "/dev/vduse/" + device_->name();
  if (bytes == 0 || bytes % 512 != 0)
    throwSys(EINVAL, "resize", path, "the capacity must be a non-zero multiple of 512 bytes");
  std::lock_guard<std::mutex> serial(resizeLock_);
  if (storage_ && !workers_) {
    // RAM: no request runs while the mapping moves, and none sees a capacity the mapping lacks.
    std::lock_guard<std::mutex> lock(storageLock_);
    storage_->resize(bytes);
    executor_->setCapacity(bytes);
  } else {
    if (storage_) storage_->resize(bytes);  // a file: positioned I/O runs on meanwhile
    executor_->setCapacity(bytes);
  }
  const uint64_t sectors = bytes / 512;
  device_->updateConfig(offsetof(VirtioBlkConfig, capacity), &sectors, sizeof sectors);
}

}  // namespace vdpa
