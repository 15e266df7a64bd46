// The virtio driver core: one device reached through one transport. Owns the memory the device may
// touch (regions with their IOVAs), the queues, and the status/feature bring-up sequence.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
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

  // Reset, ACKNOWLEDGE|DRIVER, offer `wanted & deviceFeatures` (+ VERSION_1 and ACCESS_PLATFORM,
  // which a 1.x driver behind an IOMMU must accept), FEATURES_OK and read it back.
  uint64_t negotiate(uint64_t wanted);

  // Makes a region visible to the device; returns its handle (never 0).
  uint32_t addRegion(std::shared_ptr<MemoryRegion> region);
  void removeRegion(uint32_t handle);
  // (handle, offset, len) -> device address, or false when the range is not inside a live region.
  bool translate(uint32_t handle, uint64_t offset, uint64_t len, uint64_t* iova) const {
    if (handle == 0 || handle >= regions_.size() || !regions_[handle].region) return false;
    const Registered& r = regions_[handle];
    if (len == 0 || !r.region->contains(offset, len)) return false;
    *iova = r.iova + offset;
    return true;
  }

  // Allocates ring memory and tells the device about queue `index`. Call after negotiate().
  VirtQueue& createQueue(uint16_t index, uint16_t size);
  // Enables every created queue and sets DRIVER_OK.
  void start();
  // Kicks the device when the ring says it wants one.
  void publish(VirtQueue& q) {
    if (q.ring->publish()) transport_->notify(q.index);
  }
  // Lets the device finish what it holds (up to kQuiesceBudget), resets it (it stops touching
  // memory), then drops queues and unmaps every region. Idempotent; the destructor calls it.
  void close();

 private:
  // Devices without SUSPEND (VDUSE, for one) may not survive a reset with requests in flight: a
  // VDUSE daemon busy with them does not answer the reset, and the kernel gives up on the device
  // after 30 s. So close() first waits, boundedly, for the device to return what it holds.
  static constexpr std::chrono::milliseconds kQuiesceBudget{1000};
  void quiesce();

  struct Registered {
    std::shared_ptr<MemoryRegion> region;
    uint64_t iova = 0;
  };

  const std::string path_;
  std::unique_ptr<Transport> transport_;
  IovaAllocator iova_;
  std::vector<Registered> regions_{1};  // handle 0 is never valid
  std::vector<std::unique_ptr<VirtQueue>> queues_;
  uint64_t features_ = 0;
  bool closed_ = false;
};

}  // namespace vdpa
