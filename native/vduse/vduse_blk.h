// A virtio-blk device served through VDUSE: the shared blk executor over RAM (on the device thread),
// over a file (on a pool of I/O threads, answered in ring order), or over a backend that answers
// later (requests handed out through `submit`, finished by complete(), in any order).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "device_model/blk_executor.h"
#include "device_model/blk_storage.h"
#include "device_model/blk_workers.h"
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
  ~VduseBlk();
  VduseBlk(const VduseBlk&) = delete;
  VduseBlk& operator=(const VduseBlk&) = delete;

  VduseDevice& device() { return *device_; }
  uint64_t capacity() const { return executor_->capacity(); }
  // Answers request `token` of the `submit` backend: `ok` false is an I/O error for the driver; a
  // read's `data` must hold exactly the bytes asked for (else an I/O error too). Unknown tokens (a
  // reset dropped the request) are ignored.
  void complete(uint64_t token, bool ok, std::vector<uint8_t> data);
  // Any thread but the device thread (it may block: ftruncate, waiting for a RAM request): the disk
  // becomes `bytes` long (a non-zero multiple of 512), then the config space says so and the config
  // interrupt tells the driver. A file grows as FileStorage::resize says; RAM is remapped. SysError
  // when the storage cannot (nothing changed then), or from updateConfig (the device was closed).
  void resize(uint64_t bytes);

 private:
  // Requests of one queue in the order the device took them: a file request finished early waits for
  // the ones before it, so the used ring always answers a prefix of the avail ring. A process that
  // takes the device over (reconnect) then resumes from the used index and runs exactly the rest.
  struct Slot {
    uint64_t token;
    bool done;
    ChainFinish finish;
  };
  struct Order {
    std::mutex lock;
    std::deque<Slot> slots;
  };
  struct Inflight {
    uint16_t queue;
    BlkRequest req;
  };

  uint32_t handleDeferred(uint16_t queue, const DeviceChain& chain, uint64_t token);
  void finishInOrder(uint16_t queue, uint64_t token, ChainFinish finish);

  std::unique_ptr<BlkStorage> storage_;
  std::unique_ptr<BlkExecutor> executor_;
  std::mutex storageLock_;               // RAM: held by the device thread per request and by resize (remapping)
  std::mutex resizeLock_;                // one resize at a time
  std::unique_ptr<BlkWorkers> workers_;  // file backend
  std::unique_ptr<Order[]> order_;       // file backend: per queue
  Submit submit_;
  std::mutex inflightLock_;
  std::unordered_map<uint64_t, Inflight> inflight_;  // handed out, not answered yet
  std::unique_ptr<VduseDevice> device_;              // last: its thread stops before the rest goes
};

}  // namespace vdpa
