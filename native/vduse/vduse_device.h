// A virtio device served by this process through VDUSE (Linux 5.15+): /dev/vduse/control creates it,
// /dev/vduse/NAME carries the kernel's requests (GET_VQ_STATE, SET_STATUS, UPDATE_IOTLB), and one
// native thread answers them and services the queues with the device-side ring code, so a driver in
// this very process (vhost_vdpa + openBlk) never waits for JavaScript. Memory is reached through
// VDUSE_IOTLB_GET_FD + mmap; every ring and buffer address is translated and bounds-checked against
// those mappings. Split rings only (no RING_PACKED offered: its GET_VQ_STATE needs the ring's state).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "ring/device_queue.h"

namespace vdpa {

struct VduseDeviceConfig {
  std::string name;
  std::string controlPath = "/dev/vduse/control";
  uint32_t deviceId = 0;
  uint32_t vendorId = 0;
  uint64_t features = 0;  // device-specific bits; VERSION_1, ACCESS_PLATFORM and the ring features are added
  uint16_t numQueues = 1;
  uint16_t maxQueueSize = 256;
  std::vector<uint8_t> config;  // the device's config space (read-only for the driver)
  // A device of this name exists (its process died): serve it instead of failing with EEXIST. The
  // queues the driver made ready are resumed from their used index, so the chains the dead process
  // had taken and not finished run again (right for a device that finishes chains in order).
  bool reconnect = false;
};

// Executes one chain of queue `queue` on the device thread; returns the used length, or kDeferred to
// keep the chain and finish it later through VduseDevice::complete(token, ...).
using ChainHandler = std::function<uint32_t(uint16_t queue, const DeviceChain& chain, uint64_t token)>;
constexpr uint32_t kDeferred = UINT32_MAX;
// Finishes a deferred chain on the device thread (its buffers are still mapped); returns the used length.
using ChainFinish = std::function<uint32_t(const DeviceChain& chain)>;
// Runs on the device thread when the queues stop (reset, close): every deferred chain is forgotten.
using QueuesStopped = std::function<void()>;

struct VduseQueueStats {
  uint64_t requests = 0;
  uint64_t readBytes = 0;     // device-readable bytes of the chains (what the driver sent)
  uint64_t writtenBytes = 0;  // used lengths (what the device wrote back)
};

class VduseDevice final : private GuestMemory {
 public:
  // Creates /dev/vduse/NAME, sets up its queues and starts the request thread. SysError with a hint
  // for a missing control node (modprobe vduse), a taken name (EEXIST) and missing privileges.
  VduseDevice(const VduseDeviceConfig& cfg, ChainHandler handler, QueuesStopped stopped = nullptr);
  ~VduseDevice();
  VduseDevice(const VduseDevice&) = delete;
  VduseDevice& operator=(const VduseDevice&) = delete;

  const std::string& name() const { return name_; }
  uint16_t numQueues() const { return numQueues_; }
  // Safe from any thread at any time (relaxed counters).
  VduseQueueStats stats(uint16_t queue) const;
  // Stops the thread, closes the device node and destroys the VDUSE device. EBUSY (after retrying
  // for a while) while a vdpa device still uses it. Once done, later calls do nothing.
  void close();
  // Any thread: finishes the deferred chain `token` on the device thread. A chain the device dropped
  // meanwhile (reset, close) is not touched: `finish` is not called.
  void complete(uint64_t token, ChainFinish finish);
  // Any thread (both ioctls only copy and queue work in the kernel): replaces `len` bytes of the config
  // space at `offset` and raises the config interrupt, so the driver rereads it (blk capacity, net
  // link status). EINVAL past the config space; EBADF once closed.
  void updateConfig(uint32_t offset, const void* bytes, uint32_t len);
  // Any thread: runs `task` on the device thread (in order with complete()); dropped once closed.
  void post(std::function<void()> task);
  // Device thread only (in a handler, a finish or a posted task): finishes deferred chain `token` now;
  // false when the device dropped it. The used element is published when the thread's round ends.
  bool completeNow(uint64_t token, const ChainFinish& finish);
  // Device thread only: the size of queue `q`'s ring (0 while it is not running).
  uint16_t ringSize(uint16_t q) const;
  // Device thread only: takes the chains waiting in queue `q` now (a device that needs buffers
  // before their kick has been seen).
  void serviceNow(uint16_t q);
  // Any thread: the features the driver negotiated (0 before DRIVER_OK).
  uint64_t negotiatedFeatures() const { return negotiated_.load(std::memory_order_acquire); }

 private:
  struct Mapping {
    uint64_t start = 0, last = 0;  // IOVA range, inclusive
    uint8_t* host = nullptr;       // host address of `start`
    void* base = nullptr;          // what mmap returned
    size_t length = 0;
    bool pinned = false;  // a ring holds pointers into it: unmapped only at reset
  };
  struct Queue {
    std::unique_ptr<DeviceQueue> ring;
    UniqueFd kickFd;
    uint16_t lastAvail = 0;    // for GET_VQ_STATE: the avail index the device has consumed up to
    bool pending = false;      // kicked (or just started): service it
    bool unpublished = false;  // used elements pushed outside serviceQueue
    bool dead = false;         // malformed ring: no longer used
  };
  struct Deferred {
    uint16_t queue;
    DeviceChain chain;
  };
  struct Counters {
    std::atomic<uint64_t> requests{0}, readBytes{0}, writtenBytes{0};
  };

  uint8_t* translate(uint64_t iova, uint64_t len) override;
  void unmap(Mapping& m);
  void invalidate(uint64_t start, uint64_t last);
  void dropMappings();

  void stopThread();
  void loop();
  void handleRequests();
  void setStatus(uint8_t status);
  void startQueues();
  void stopQueues();
  // Takes up to `budget` chains; true when chains may be left.
  bool serviceQueue(uint16_t index, unsigned budget);
  void watch(int fd, uint32_t token, bool add);
  void finishDeferred();
  void publishTouched();
  void releaseRetired();
  bool heldByDeferred(const Mapping& m) const;
  void count(uint16_t queue, const DeviceChain& chain, uint32_t len);

  const std::string name_;
  const std::string devPath_;
  const uint16_t numQueues_;
  const uint32_t configSize_;
  const ChainHandler handler_;
  const QueuesStopped stopped_;
  std::atomic<uint64_t> negotiated_{0};
  UniqueFd controlFd_;
  UniqueFd devFd_;
  UniqueFd stopFd_;
  UniqueFd completeFd_;
  std::mutex completionsLock_;
  struct Completion {
    uint64_t token = 0;  // 0: a posted task
    ChainFinish finish;
    std::function<void()> task;
  };
  std::vector<Completion> completions_;  // under completionsLock_
  UniqueFd epollFd_;
  std::thread thread_;
  bool created_ = false;
  // Device thread only from here on.
  std::vector<Queue> queues_;
  std::unique_ptr<Counters[]> counters_;
  std::map<uint64_t, Mapping> mappings_;  // by start
  std::vector<Mapping> retired_;          // invalidated while a ring pointed into them
  bool pinning_ = false;                  // translations made now are kept by a ring
  bool running_ = false;
  bool resume_ = false;  // reconnected: start the ready queues without waiting for DRIVER_OK
  std::unordered_map<uint64_t, Deferred> deferred_;  // chains a handler keeps, by token
  uint64_t nextToken_ = 1;
  DeviceChain chain_;
};

}  // namespace vdpa
