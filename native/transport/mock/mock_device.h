// The device side of the mock: what a virtio device does behind its registers. It holds the queues
// the driver set up, the DMA mappings it may reach, and, once started (DRIVER_OK), a thread that waits
// on the queues' kick eventfds, consumes chains with the device-side ring code, lets the model (blk,
// net) do the work, writes used entries and signals the call eventfds; faults bend that on purpose.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "memory/dma_mappings.h"
#include "ring/device_queue.h"
#include "transport/mock/mock_model.h"
#include "transport/transport.h"

namespace vdpa {

class MockDevice final : private GuestMemory {
 public:
  enum class Fault { kNone, kBadUsedId, kLongUsedLen, kUsedIdxJump, kStall, kResetInFlight, kNoFeaturesOk };
  // Fault names accepted in MockOptions::fault, in Fault order (after kNone).
  static const std::vector<std::string>& faultNames();

  // `opts.fault` must be one of faultNames() or empty (EINVAL otherwise, naming `path`).
  // `needsReset` runs on the device thread when the device gives up on its rings.
  MockDevice(std::string path, MockModel& model, const MockOptions& opts, std::function<void()> needsReset);
  ~MockDevice();
  MockDevice(const MockDevice&) = delete;
  MockDevice& operator=(const MockDevice&) = delete;

  // The device never accepts FEATURES_OK (fault no-features-ok).
  bool refusesFeatures() const { return fault_ == Fault::kNoFeaturesOk; }

  void mapDma(uint64_t iova, void* host, uint64_t len);
  void unmapDma(uint64_t iova, uint64_t len);

  uint16_t queueCount() const { return static_cast<uint16_t>(queues_.size()); }
  // Records where queue `a.index` lives (the index is checked by the caller) and makes its kick fd.
  void setupQueue(const QueueAddresses& a, int callFd);
  void enableQueue(uint16_t index);
  void kick(uint16_t index);

  // DRIVER_OK: builds the rings of the enabled queues with the negotiated `features` and starts the
  // device thread.
  void start(uint64_t features);
  // Stops the thread (if running) and forgets the queues; DMA mappings stay.
  void reset();
  // Suspend (hand-over): the thread finishes the chains it took, publishes them and stops; chains
  // still in the rings stay there, untouched.
  void suspend();

 private:
  struct QueueState {
    QueueAddresses addr{};
    int callFd = -1;
    UniqueFd kickFd;
    bool enabled = false;
    std::unique_ptr<DeviceQueue> ring;  // split or packed, as negotiated
    bool dead = false;                  // malformed ring: the device stops using it
  };

  uint8_t* translate(uint64_t iova, uint64_t len) override;
  void stopThread();
  void deviceLoop();
  // Services every queue, and again while the model makes room for a queue it held back.
  void serviceAll(std::vector<UsedEntry>& done);
  // Takes the queue's available chains; true when it stopped because the model held it back.
  bool serviceQueue(uint16_t index, std::vector<UsedEntry>& done);
  void complete(std::vector<UsedEntry>& done);
  void giveUp();

  const std::string path_;
  MockModel& model_;
  const MockOptions opts_;
  Fault fault_ = Fault::kNone;
  const std::function<void()> needsReset_;
  bool packed_ = false;
  std::vector<QueueState> queues_;
  UniqueFd stopFd_;
  UniqueFd suspendFd_;
  UniqueFd epollFd_;
  std::thread thread_;
  uint32_t completed_ = 0;  // for faultAfter; device thread only
  std::shared_mutex mapLock_;
  DmaMappings mappings_;
  // strictDmaUpdates: bumped by every mapping change, and its value at the first kick the device has
  // not yet picked up (chains are in flight from that kick on).
  std::atomic<uint64_t> mapGeneration_{0};
  std::atomic<uint64_t> kickGeneration_{0};
  std::atomic<bool> kickPending_{false};
  DeviceChain chain_;  // reused per chain, device thread only
};

}  // namespace vdpa
