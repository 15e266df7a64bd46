// A virtio-blk device served through VDUSE: the shared blk executor over a RAM or file backend, or
// over a backend that answers later (requests handed out through `submit`, finished by complete()).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "device_model/blk_executor.h"
#include "device_model/blk_storage.h"
#include "vduse/vduse_device.h"

namespace vdpa {

struct VduseBlkOptions {
  std::string name;
  std::string controlPath = "/dev/vduse/control";
  std::string file;       // empty: RAM, or the `submit` backend
  uint64_t capacity = 0;  // RAM and `submit` (bytes, a multiple of 512)
  BlkParams params;
  uint16_t queueSize = 256;
  uint32_t vendorId = 0;   // what `vdpa dev show` reports; qemu-storage-daemon uses 0 too
  bool reconnect = false;  // see VduseDeviceConfig::reconnect
};

class VduseBlk {
 public:
  // Runs on the device thread for each request that needs the backend: `data` holds a write's bytes.
  // The answer comes through complete(token, ...), from any thread.
  using Submit = std::function<void(uint64_t token, const BlkRequest& req, std::vector<uint8_t> data)>;

  // Without `submit` the disk is `opts.file`, or RAM of `opts.capacity` bytes.
  explicit VduseBlk(const VduseBlkOptions& opts, Submit submit = nullptr);

  VduseDevice& device() { return *device_; }
  uint64_t capacity() const { return capacity_; }
  // Answers request `token` of the `submit` backend: `ok` false is an I/O error for the driver; a
  // read's `data` must hold exactly the bytes asked for (else an I/O error too). Unknown tokens (a
  // reset dropped the request) are ignored.
  void complete(uint64_t token, bool ok, std::vector<uint8_t> data);

 private:
  uint32_t handleDeferred(const DeviceChain& chain, uint64_t token);

  uint64_t capacity_ = 0;
  std::unique_ptr<BlkStorage> storage_;
  std::unique_ptr<BlkExecutor> executor_;
  Submit submit_;
  std::mutex inflightLock_;
  std::unordered_map<uint64_t, BlkRequest> inflight_;  // `submit` requests not answered yet
  std::unique_ptr<VduseDevice> device_;                // last: its thread stops before the rest goes
};

}  // namespace vdpa
