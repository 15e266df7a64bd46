// The virtio driver core: one device reached through one transport. Owns the memory the device may
// touch (regions with their IOVAs), the queues, and the status/feature bring-up sequence.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/sys_error.h"
#include "common/unique_fd.h"
#include "memory/iova_allocator.h"
#include "memory/memory_region.h"
#include "ring/driver_queue.h"
#include "transport/transport.h"

namespace vdpa {

struct VirtQueue {
  uint16_t index = 0;
  std::unique_ptr<DriverQueue> ring;
  UniqueFd callFd;  // the device signals completions here
  // Chains in flight as the JS thread last published them (0 once the ring broke): what a close on
  // the threadpool waits for, as only the JS thread may read the ring. Receive queues, whose
  // buffers wait for traffic, are not awaited.
  std::atomic<uint32_t> held{0};
  bool awaited = true;

  // The one completion loop: drains into `out` (room for `cap`), re-arms interrupts once the ring
  // is empty and drains again if the device raced the re-arm. Hands each batch to
  // `sink(count, broken)`; a full `out` is handed over before draining goes on. Returns once
  // interrupts are armed, the ring is broken, or `sink` returns false (its owner went away).
  template <typename Sink>
  void deliver(Completion* out, size_t cap, Sink&& sink) {
    for (;;) {
      size_t n = 0;
      bool armed = false;
      while (n < cap) {
        n += ring->drain(out + n, cap - n);
        if (n < cap && !ring->enableInterrupts()) {
          armed = true;
          break;
        }
      }
      const bool broken = ring->broken();
      if (n == 0 && !broken) return;
      if (!sink(n, broken) || armed || broken) return;
    }
  }

  // What a request on a ring that broke the virtio rules fails with.
  SysError brokenError(const std::string& path) const;
};

class VirtioDevice {
 public:
  explicit VirtioDevice(std::unique_ptr<Transport> transport);
  ~VirtioDevice();
  VirtioDevice(const VirtioDevice&) = delete;
  VirtioDevice& operator=(const VirtioDevice&) = delete;

  // Valid until close(); after it, only path() and closed() may be used.
  Transport& transport() { return *transport_; }
  const std::string& path() const { return path_; }
  bool closed() const { return closed_; }
  // True while a step (negotiate, createQueue, start) runs on the threadpool: the JS thread must
  // not touch the device meanwhile. Set and cleared on the JS thread; region removals asked for
  // meanwhile (a finalizer) are carried out when it is cleared.
  bool busy() const { return busy_; }
  void setBusy(bool busy);

  // Reset, ACKNOWLEDGE|DRIVER, offer `wanted & deviceFeatures` (+ VERSION_1 and ACCESS_PLATFORM,
  // which a 1.x driver behind an IOMMU must accept), FEATURES_OK and read it back.
  uint64_t negotiate(uint64_t wanted);

  // Makes a region visible to the device; returns its handle (never 0). On a transport whose DMA
  // updates need quiescing, once the device runs, the mapping is only queued (mapped() is false
  // until applyDmaJobs()/finishDmaJobs() ran); so is the unmap of removeRegion.
  uint32_t addRegion(std::shared_ptr<MemoryRegion> region);
  void removeRegion(uint32_t handle);

  // ---- hand-over (lib/handover.ts): the device a driver moves to registers the buffers of the one
  // it leaves under the same handles, so the chains and buffers the driver holds stay valid.
  // Makes this device draw handles from `from`'s space; before it has any region of its own.
  void shareHandles(VirtioDevice& from);
  // Registers `region` under `handle`, which the shared space has given out to another device.
  void adoptRegion(uint32_t handle, std::shared_ptr<MemoryRegion> region);
  bool hasRegion(uint32_t handle) const { return handle != 0 && handle < regions_.size() && regions_[handle].region; }
  bool canSuspend() { return transport_->canSuspend(); }
  // Any thread: the transport's suspend (the JS thread keeps off the device meanwhile).
  void suspend() { transport_->suspend(); }
  bool mapped(uint32_t handle) const {
    return handle != 0 && handle < regions_.size() && regions_[handle].region &&
           regions_[handle].state == MapState::kMapped;
  }
  // (handle, offset, len) -> device address, or false when the range is not inside a live region
  // the device can reach yet.
  bool translate(uint32_t handle, uint64_t offset, uint64_t len, uint64_t* iova) const {
    if (!mapped(handle)) return false;
    const Registered& r = regions_[handle];
    if (len == 0 || !r.region->contains(offset, len)) return false;
    *iova = r.iova + offset;
    return true;
  }

  // (handle, offset, len) -> the host address of that range of a live, mapped region, or nullptr.
  uint8_t* hostRange(uint32_t handle, uint64_t offset, uint64_t len) const {
    if (!mapped(handle) || len == 0 || !regions_[handle].region->contains(offset, len)) return nullptr;
    return regions_[handle].region->data() + offset;
  }

  // ---- deferred DMA updates: queued on the JS thread, applied on a worker thread while the caller
  // keeps every chain off the device, finished on the JS thread.
  struct DmaJob {
    bool map = false;  // else unmap
    uint32_t handle = 0;
    uint64_t iova = 0;
    std::shared_ptr<MemoryRegion> region;  // the pages stay allocated until the job ran
    std::exception_ptr error;              // set by applyDmaJobs when the transport refused
  };
  bool dmaPending() const { return !dmaJobs_.empty(); }
  std::vector<DmaJob> takeDmaJobs();
  // Any thread: makes the transport calls (one IOTLB batch). Does nothing once the device is closed.
  void applyDmaJobs(std::vector<DmaJob>& jobs);
  // JS thread: regions whose mapping took become mapped; IOVAs of unmapped regions are free again.
  void finishDmaJobs(const std::vector<DmaJob>& jobs);

  // Allocates ring memory and tells the device about queue `index`. Call after negotiate().
  VirtQueue& createQueue(uint16_t index, uint16_t size);
  // Enables every created queue and sets DRIVER_OK.
  void start();
  // Kicks the device when the ring says it wants one.
  void publish(VirtQueue& q) {
    if (q.ring->publish()) transport_->notify(q.index);
  }
  // JS thread: publishes what `q` holds now, for a close waiting on the threadpool.
  void noteInFlight(VirtQueue& q) {
    const uint32_t n = q.ring->broken() ? 0 : q.ring->inFlight();
    q.held.store(n);
    if (n == 0 && closing_.load()) {
      std::lock_guard<std::mutex> lock(idleLock_);
      idle_.notify_all();
    }
  }

  // Close, in three parts so the blocking middle runs on the threadpool while the JS thread keeps
  // delivering completions:
  // - closeBegin (JS thread): the device is closed to callers from now on; only the queues whose
  //   index is in `awaited` are waited for.
  // - closeOnWorker (any thread, once): waits until the awaited queues hold nothing, at most
  //   `budget` (capped at kQuiesceBudget), resets the device (it stops touching memory), unmaps
  //   every region and drops the transport. It never reads a ring.
  // - closeEnd (JS thread, after closeOnWorker and after the queues stopped): frees rings, regions.
  void closeBegin(const std::vector<uint16_t>& awaited);
  void closeOnWorker(std::chrono::milliseconds budget);
  void closeEnd();
  // All three at once, waiting for nothing (finalizers; the destructor). Idempotent.
  void close();

  // Devices without SUSPEND (VDUSE, for one) may not survive a reset with requests in flight: a
  // VDUSE daemon busy with them does not answer the reset, and the kernel gives up on the device
  // after 30 s. So a close first waits, boundedly, for the device to return what it holds.
  static constexpr std::chrono::milliseconds kQuiesceBudget{1000};

 private:
  bool awaitedIdle() const;

  enum class MapState { kQueued, kApplying, kMapped, kFailed };
  struct Registered {
    std::shared_ptr<MemoryRegion> region;
    uint64_t iova = 0;
    MapState state = MapState::kMapped;
  };
  bool deferDmaUpdates() const { return started_ && transport_->dmaUpdatesNeedQuiesce(); }
  // Maps `region` at a fresh IOVA (or queues the mapping) and stores it under `handle`.
  void registerAt(uint32_t handle, std::shared_ptr<MemoryRegion> region);

  // Region handles, shared by the devices of one hand-over chain: users[h] counts the devices that
  // hold handle h; a handle is given out again only once no device holds it. Locked: queue setup
  // adds its ring region on the threadpool while the other device allocates on the JS thread.
  class HandleSpace {
   public:
    uint32_t acquire();
    // Counts one more device holding `handle`; false when no device holds it.
    bool retain(uint32_t handle);
    void release(uint32_t handle);

   private:
    std::mutex lock_;
    std::vector<uint32_t> users_{1};  // handle 0 is never valid
  };

  const std::string path_;
  std::unique_ptr<Transport> transport_;
  IovaAllocator iova_;
  std::vector<Registered> regions_{1};  // handle 0 is never valid
  std::shared_ptr<HandleSpace> handles_ = std::make_shared<HandleSpace>();
  std::vector<std::unique_ptr<VirtQueue>> queues_;
  uint64_t features_ = 0;
  bool started_ = false;
  bool closed_ = false;
  bool busy_ = false;
  std::vector<uint32_t> deferredRemovals_;
  std::atomic<bool> closing_{false};
  bool closedOnWorker_ = false;
  std::mutex idleLock_;
  std::condition_variable idle_;
  std::vector<DmaJob> dmaJobs_;  // queued, not yet taken
  // Held by applyDmaJobs and closeOnWorker (two threadpool threads): the transport's mappings are
  // touched by one thread at a time, and the transport is not dropped under a DMA update.
  std::mutex dmaLock_;
};

}  // namespace vdpa
