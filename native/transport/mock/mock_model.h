// A device model behind the mock transport: what a mock device is (config, features) and what it does
// with the chains its queues receive. Models run on the mock's device thread only.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "device_model/chain_bytes.h"
#include "ring/device_queue.h"
#include "ring/virtio_ring.h"
#include "transport/mock/mock_net_options.h"

namespace vdpa {

struct MockOptions {
  std::string model;              // "blk" | "net"
  uint64_t capacity = 64u << 20;  // blk: bytes
  uint16_t numQueues = 1;         // blk: request queues
  uint16_t maxQueueSize = 1024;
  uint32_t segMax = 126;        // blk: data segments per request
  uint32_t sizeMax = 1u << 20;  // blk: bytes per segment
  uint32_t blockSize = 512;
  bool readOnly = false;
  uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  uint16_t mtu = 1500;
  std::string fault;               // "" or one of the fault names the transport knows
  uint32_t faultAfter = 0;         // completions to let through before the fault hits
  uint32_t completionDelayMs = 0;  // how long each batch of completions is held back (tests)
  // Behave like a VDUSE device: chains take a moment, and a DMA mapping change while the device
  // works on chains breaks the device (NEEDS_RESET); the driver must quiesce around updates.
  bool strictDmaUpdates = false;
  // Hand-over tests: offer suspend() (as VHOST_BACKEND_F_SUSPEND), or offer it and fail it (the
  // device breaks: NEEDS_RESET); blk: keep the blocks in this file instead of RAM (two mock devices
  // then serve one disk).
  uint32_t openDelayMs = 0;       // how long opening takes (on the threadpool)
  uint64_t withholdFeatures = 0;  // feature bits the device does not offer (a device without them)
  bool suspend = false;
  bool failSuspend = false;
  std::string file;
  MockNetOptions net;  // mock:net only
};

// Finished chain, to be written to the used ring.
struct UsedEntry {
  uint16_t queue;
  uint32_t id;
  uint32_t len;
};

class MockModel {
 public:
  virtual ~MockModel() = default;
  virtual uint32_t deviceId() const = 0;
  virtual uint64_t features() const = 0;  // device-specific bits only
  virtual uint16_t numQueues() const = 0;
  virtual std::vector<uint8_t> config() const = 0;
  virtual void writeConfig(uint32_t, const void*, uint32_t) {}
  // DRIVER_OK with the negotiated `features` (before the first chain arrives).
  virtual void start(uint64_t features) { (void)features; }
  // Handles one chain from queue `q`. Returns true when the chain is finished now (`usedLen` set);
  // false when the model keeps it to finish later through drainDeferred().
  virtual bool handle(uint16_t q, const DeviceChain& chain, uint32_t* usedLen) = 0;
  // Whether the model takes another chain from `q` now. While false the device leaves the queue's
  // chains in the ring (backpressure) until drainDeferred() made room.
  virtual bool accepts(uint16_t q) const {
    (void)q;
    return true;
  }
  // Finishes chains kept earlier, now that `q` may have new buffers. Appends to `done`.
  virtual void drainDeferred(uint16_t q, std::vector<UsedEntry>& done) {
    (void)q;
    (void)done;
  }
  // Forget every held chain (device reset).
  virtual void reset() {}
};

}  // namespace vdpa
