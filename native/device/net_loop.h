// NetLoop: frame loops over virtio-net queues that never visit JS per frame — a forwarder (frames
// received on one queue go out on another), a generator and a sink. It works on the driver queues a
// NetDevice already set up, with the buffers it posted: receive buffer `token` is bytes
// [token * slot, + slot) of the receive region, transmit slot `token` the same in the transmit
// region. The caller (napi/net_loop_wrap.cc) runs pump() on the JS thread whenever one of the
// queues is signalled or a rate timer fires; nothing here blocks or makes a system call besides kicks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/sys_error.h"
#include "device/virtio_device.h"

namespace vdpa {

struct NetLoopStats {
  uint64_t frames = 0;  // generated / forwarded frames the device took, or frames sunk
  uint64_t bytes = 0;   // their bytes (without the virtio-net header)
  uint64_t drops = 0;   // received frames not passed on (too long for the other side, or the loop stopped)
  uint64_t errors = 0;  // received buffers that held no frame (a header only)
};

// One queue of a path. Receive side: every buffer of the queue (tokens 0..size-1) is posted and
// has `slot` bytes; transmit side: the loop owns tokens 0..size-1, slot `slot` bytes each, and
// sends frames of at most `maxFrame` bytes.
struct NetLoopQueue {
  std::shared_ptr<VirtioDevice> device;
  VirtQueue* queue = nullptr;  // nullptr: this side is absent
  uint32_t region = 0;
  uint32_t slot = 0;
  bool mergeable = false;  // receive: VIRTIO_NET_F_MRG_RXBUF (a header with num_buffers)
  uint32_t maxFrame = 0;   // transmit
};

class NetLoop {
 public:
  using Clock = std::chrono::steady_clock;

  // Frames received on `rx` go out on `tx`. Without `tx` the path is a sink; without `rx` a
  // generator (see setGenerator). Throws SysError (EINVAL) for a queue or region that does not fit.
  void addPath(const NetLoopQueue& rx, const NetLoopQueue& tx);
  // What generator paths send: `frame` (without header), `count` frames in all (0: until stopped),
  // at most `rate` frames per second (0: no limit).
  void setGenerator(std::vector<uint8_t> frame, uint64_t count, double rate);
  // Takes the transmit slots (generator slots get their frame once, here).
  void start(Clock::time_point now);
  // One round: completions drained, frames passed on, buffers reposted. Returns the nanoseconds
  // until the rate allows the next frame (call again then), or -1 when only a completion can
  // bring more work. Ends the loop (finished()) when it is done or a queue broke.
  int64_t pump(Clock::time_point now);
  // Stops taking new frames: with `drain`, finished() once the device returned every transmit chain
  // (pump() goes on until then); without it (the device is closing), at once, the rings untouched.
  void stop(bool drain);
  // Ends the loop with `error` without touching the rings (a queue stopped under it).
  void abandon(const SysError& error);

  bool finished() const { return finished_; }
  // The error the loop ended with, or nullptr; and the queue it is about (nullptr: none).
  const SysError* error() const { return error_.get(); }
  const VirtQueue* failedQueue() const { return failedQueue_; }
  const NetLoopStats& stats() const { return stats_; }
  // Every queue the loop uses (for the caller's wake-ups).
  std::vector<VirtQueue*> queues() const;

 private:
  struct Path {
    NetLoopQueue rx, tx;
    uint8_t* rxHost = nullptr;
    uint64_t rxIova = 0;
    uint32_t rxSize = 0;
    uint8_t* txHost = nullptr;
    uint64_t txIova = 0;
    uint32_t txSize = 0;
    // Receive completions not yet passed on (the transmit side was full): a FIFO of rxSize entries.
    std::vector<Completion> pending;
    uint32_t pendHead = 0, pendCount = 0;
    std::vector<Completion> scratch;
    std::vector<uint32_t> freeTx;  // a stack of transmit tokens
    std::vector<uint32_t> txLen;   // frame bytes of each transmit token in flight
    std::vector<uint8_t> txBusy;
    uint32_t txInFlight = 0;
    bool rxPosted = false, txAdded = false;
    bool rxDead = false, txDead = false;  // the queue failed: not touched again
    // A frame spread over mergeable buffers, as far as it arrived.
    bool gathering = false, oversize = false;
    uint32_t want = 0, got = 0, gathered = 0;
    int64_t gatherSlot = -1;
  };

  void fail(SysError error, const VirtQueue* queue);
  SysError violation(const Path& p, const std::string& detail) const;
  // Each returns false once the loop ended (a broken ring, a violation).
  bool drainTx(Path& p);
  bool drainRx(Path& p, bool* armed);  // *armed: the ring was empty and interrupts are on
  bool passOn(Path& p);
  void generate(Path& p, Clock::time_point now);
  void repost(Path& p, uint32_t token);
  void send(Path& p, uint32_t token, uint32_t len);
  void publish(Path& p);
  bool idle() const;
  int64_t drainAfterFailure();

  std::vector<Path> paths_;
  std::vector<uint8_t> frame_;
  uint64_t remaining_ = 0;
  bool unlimited_ = true;
  double rate_ = 0, allowance_ = 0, burst_ = 1;
  Clock::time_point last_{};
  bool started_ = false, stopping_ = false, finished_ = false;
  std::unique_ptr<SysError> error_;
  const VirtQueue* failedQueue_ = nullptr;
  NetLoopStats stats_;
};

}  // namespace vdpa
