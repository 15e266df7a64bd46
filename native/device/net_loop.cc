#include "device/net_loop.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ring/virtio_config.h"

namespace vdpa {

namespace {
constexpr uint32_t kHdr = sizeof(VirtioNetHdr);

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }

// The host view and device address of `count` slots of `slot` bytes at the start of `region`.
void mapSlots(const NetLoopQueue& q, uint32_t count, uint8_t** host, uint64_t* iova) {
  const uint64_t len = uint64_t{count} * q.slot;
  *host = q.device->hostRange(q.region, 0, len);
  if (!*host || !q.device->translate(q.region, 0, len, iova))
    throwSys(EINVAL, "netLoop", q.device->path(), "the buffers of the queue are not a mapped region");
}
}  // namespace

void NetLoop::addPath(const NetLoopQueue& rx, const NetLoopQueue& tx) {
  Path p;
  p.rx = rx;
  p.tx = tx;
  if (rx.queue) {
    p.rxSize = rx.queue->ring->size();
    if (rx.slot <= kHdr) throwSys(EINVAL, "netLoop", rx.device->path(), "receive buffers too small");
    mapSlots(rx, p.rxSize, &p.rxHost, &p.rxIova);
    p.pending.resize(p.rxSize);
    p.scratch.resize(p.rxSize);
  }
  if (tx.queue) {
    p.txSize = tx.queue->ring->size();
    if (tx.slot <= kHdr || tx.maxFrame == 0 || tx.maxFrame > tx.slot - kHdr)
      throwSys(EINVAL, "netLoop", tx.device->path(), "transmit slots too small");
    mapSlots(tx, p.txSize, &p.txHost, &p.txIova);
    p.txLen.assign(p.txSize, 0);
    p.txBusy.assign(p.txSize, 0);
    if (!rx.queue)
      p.scratch.resize(p.txSize);
    else
      p.scratch.resize(std::max(p.rxSize, p.txSize));
  }
  if (!rx.queue && !tx.queue) throwSys(EINVAL, "netLoop", "", "a path needs a queue");
  paths_.push_back(std::move(p));
}

void NetLoop::setGenerator(std::vector<uint8_t> frame, uint64_t count, double rate) {
  frame_ = std::move(frame);
  unlimited_ = count == 0;
  remaining_ = count;
  rate_ = rate > 0 ? rate : 0;
  // A burst of up to 10 ms of frames, so a coarse timer still reaches the rate.
  burst_ = std::max(1.0, rate_ / 100);
}

void NetLoop::start(Clock::time_point now) {
  for (Path& p : paths_) {
    if (!p.tx.queue) continue;
    if (!p.rx.queue && (frame_.empty() || frame_.size() > p.tx.maxFrame))
      throwSys(EINVAL, "netLoop", p.tx.device->path(), "the generated frame does not fit the transmit slots");
    for (uint32_t t = p.txSize; t-- > 0;) {
      p.freeTx.push_back(t);
      uint8_t* slot = p.txHost + uint64_t{t} * p.tx.slot;
      std::memset(slot, 0, kHdr);
      if (!p.rx.queue) std::memcpy(slot + kHdr, frame_.data(), frame_.size());
    }
  }
  last_ = now;
  allowance_ = std::min(burst_, 1.0);
  started_ = true;
}

std::vector<VirtQueue*> NetLoop::queues() const {
  std::vector<VirtQueue*> q;
  for (const Path& p : paths_) {
    if (p.rx.queue) q.push_back(p.rx.queue);
    if (p.tx.queue) q.push_back(p.tx.queue);
  }
  return q;
}

void NetLoop::fail(SysError error, const VirtQueue* queue) {
  if (finished_) return;
  if (!error_) {
    error_ = std::make_unique<SysError>(std::move(error));
    failedQueue_ = queue;
  }
  // The other queues stay sound: pump() takes back what the device holds of them before the end.
  for (Path& p : paths_) {
    if (p.rx.queue == queue) p.rxDead = true;
    if (p.tx.queue == queue) p.txDead = true;
  }
  stopping_ = true;
}

void NetLoop::abandon(const SysError& error) {
  if (finished_) return;
  if (!error_) error_ = std::make_unique<SysError>(error);
  finished_ = true;
}

// After a failure: the transmit chains of sound queues still on the device are waited for, and the
// receive buffers of sound queues are posted again, so their NetDevice gets them back whole.
int64_t NetLoop::drainAfterFailure() {
  bool waiting = false;
  for (Path& p : paths_) {
    if (!p.tx.queue || p.txDead || p.tx.queue->ring->broken()) continue;
    publish(p);
    if (p.txInFlight > 0 && !drainTx(p)) continue;
    if (p.txInFlight > 0 && !p.txDead) waiting = true;
  }
  if (waiting) return -1;
  for (Path& p : paths_) {
    if (!p.rx.queue || p.rxDead || p.rx.queue->ring->broken()) continue;
    for (; p.pendCount > 0; p.pendCount--, p.pendHead = (p.pendHead + 1) % p.rxSize)
      repost(p, p.pending[p.pendHead].token);
    if (p.gathering) p.gathering = false;
    publish(p);
  }
  finished_ = true;
  return -1;
}

SysError NetLoop::violation(const Path& p, const std::string& detail) const {
  const std::string syscall = "virtqueue " + std::to_string(p.rx.queue->index);
  const std::string& path = p.rx.device->path();
  return SysError(EPROTO, syscall, path,
                  "EPROTO: device broke the virtio rules: " + detail + ", " + syscall + " '" + path + "'",
                  "the device or its driver is faulty; close and reopen it");
}

void NetLoop::stop(bool drain) {
  if (finished_) return;
  stopping_ = true;
  if (!drain) finished_ = true;
}

bool NetLoop::idle() const {
  for (const Path& p : paths_)
    if (p.txInFlight > 0 || p.gathering) return false;
  return true;
}

void NetLoop::repost(Path& p, uint32_t token) {
  const Segment seg{p.rxIova + uint64_t{token} * p.rx.slot, p.rx.slot, true};
  // Every buffer came from this ring, so there is room for it again.
  if (p.rx.queue->ring->add(&seg, 1, token)) p.rxPosted = true;
}

void NetLoop::send(Path& p, uint32_t token, uint32_t len) {
  const Segment seg{p.txIova + uint64_t{token} * p.tx.slot, kHdr + len, false};
  if (!p.tx.queue->ring->add(&seg, 1, token)) {
    p.freeTx.push_back(token);
    return;
  }
  p.txLen[token] = len;
  p.txBusy[token] = 1;
  p.txInFlight++;
  p.txAdded = true;
}

void NetLoop::publish(Path& p) {
  if (p.rxPosted) {
    p.rx.device->publish(*p.rx.queue);
    p.rxPosted = false;
  }
  if (p.txAdded) {
    p.tx.device->publish(*p.tx.queue);
    p.tx.device->noteInFlight(*p.tx.queue);
    p.txAdded = false;
  }
}

bool NetLoop::drainTx(Path& p) {
  DriverQueue& ring = *p.tx.queue->ring;
  const size_t cap = p.scratch.size();
  for (;;) {
    const size_t n = ring.drain(p.scratch.data(), cap);
    for (size_t i = 0; i < n; i++) {
      const uint32_t t = p.scratch[i].token;
      if (t >= p.txSize || !p.txBusy[t]) {
        fail(SysError(EPROTO, "virtqueue " + std::to_string(p.tx.queue->index), p.tx.device->path(),
                      "EPROTO: a transmit completion for a chain the loop did not post"),
             p.tx.queue);
        return false;
      }
      p.txBusy[t] = 0;
      p.txInFlight--;
      p.freeTx.push_back(t);
      stats_.frames++;
      stats_.bytes += p.txLen[t];
    }
    if (ring.broken()) {
      fail(p.tx.queue->brokenError(p.tx.device->path()), p.tx.queue);
      return false;
    }
    if (n < cap && !ring.enableInterrupts()) break;
  }
  p.tx.device->noteInFlight(*p.tx.queue);
  return true;
}

bool NetLoop::drainRx(Path& p, bool* armed) {
  DriverQueue& ring = *p.rx.queue->ring;
  *armed = false;
  for (;;) {
    // Every buffer the ring can return fits: at most rxSize are out, pending or on the device.
    const size_t cap = p.rxSize - p.pendCount;
    if (cap == 0) return true;  // all buffers are here: nothing to wait for until some are passed on
    const size_t n = ring.drain(p.scratch.data(), cap);
    for (size_t i = 0; i < n; i++) {
      p.pending[(p.pendHead + p.pendCount) % p.rxSize] = p.scratch[i];
      p.pendCount++;
    }
    if (ring.broken()) {
      fail(p.rx.queue->brokenError(p.rx.device->path()), p.rx.queue);
      return false;
    }
    if (n < cap && !ring.enableInterrupts()) {
      *armed = true;
      return true;
    }
  }
}

// Passes received frames on (or counts them, for a sink), oldest first, until the transmit side
// is full; every buffer taken is posted again at once.
bool NetLoop::passOn(Path& p) {
  while (p.pendCount > 0) {
    const Completion c = p.pending[p.pendHead];
    if (c.token >= p.rxSize) {
      fail(violation(p,
                     "a receive completion for buffer " + std::to_string(c.token) + " of " + std::to_string(p.rxSize)),
           p.rx.queue);
      return false;
    }
    const uint8_t* buf = p.rxHost + uint64_t{c.token} * p.rx.slot;
    // The ring checked len against the buffer; here only the frame's own rules are left.
    const uint32_t len = std::min(c.len, p.rx.slot);
    uint32_t at = 0;
    if (!p.gathering) {
      uint32_t want = 1;
      if (p.rx.mergeable) {
        if (len < kHdr) {
          fail(violation(
                   p, "a received frame's first buffer holds " + std::to_string(len) + " bytes, less than its header"),
               p.rx.queue);
          return false;
        }
        want = le16(buf + offsetof(VirtioNetHdr, num_buffers));
        if (want == 0) {
          fail(violation(p, "num_buffers 0 in a received frame"), p.rx.queue);
          return false;
        }
        if (want > p.rxSize) {
          fail(violation(p, "num_buffers " + std::to_string(want) + " in a received frame, more than the " +
                                std::to_string(p.rxSize) + " buffers posted"),
               p.rx.queue);
          return false;
        }
      } else if (len <= kHdr) {
        stats_.errors++;  // a buffer with no frame in it
        repost(p, c.token);
        p.pendHead = (p.pendHead + 1) % p.rxSize;
        p.pendCount--;
        continue;
      }
      int64_t slot = -1;
      if (p.tx.queue && !stopping_) {
        if (p.freeTx.empty()) return true;  // the other side is full: the frame waits
        slot = p.freeTx.back();
        p.freeTx.pop_back();
      }
      p.gathering = true;
      p.oversize = false;
      p.want = want;
      p.got = 0;
      p.gathered = 0;
      p.gatherSlot = slot;
      at = kHdr;
    } else if (len == 0) {
      fail(violation(p, "buffer " + std::to_string(p.got + 1) + " of " + std::to_string(p.want) +
                            " of a received frame is empty"),
           p.rx.queue);
      return false;
    }
    const uint32_t n = len - at;
    if (p.gatherSlot >= 0) {
      if (uint64_t{p.gathered} + n > p.tx.maxFrame) {
        p.oversize = true;
      } else {
        std::memcpy(p.txHost + uint64_t(p.gatherSlot) * p.tx.slot + kHdr + p.gathered, buf + at, n);
      }
    }
    p.gathered += n;
    p.got++;
    repost(p, c.token);
    p.pendHead = (p.pendHead + 1) % p.rxSize;
    p.pendCount--;
    if (p.got < p.want) continue;
    p.gathering = false;
    if (!p.tx.queue) {
      stats_.frames++;
      stats_.bytes += p.gathered;
    } else if (p.gatherSlot < 0 || p.oversize || p.gathered == 0) {
      if (p.gatherSlot >= 0) p.freeTx.push_back(static_cast<uint32_t>(p.gatherSlot));
      stats_.drops++;
    } else {
      send(p, static_cast<uint32_t>(p.gatherSlot), p.gathered);
    }
  }
  return true;
}

void NetLoop::generate(Path& p, Clock::time_point now) {
  if (rate_ > 0) {
    const double dt = std::chrono::duration<double>(now - last_).count();
    allowance_ = std::min(burst_, allowance_ + rate_ * dt);
    last_ = now;
  }
  while (!stopping_ && (unlimited_ || remaining_ > 0) && !p.freeTx.empty() && (rate_ == 0 || allowance_ >= 1)) {
    const uint32_t t = p.freeTx.back();
    p.freeTx.pop_back();
    send(p, t, static_cast<uint32_t>(frame_.size()));
    if (!unlimited_) remaining_--;
    if (rate_ > 0) allowance_ -= 1;
  }
}

int64_t NetLoop::pump(Clock::time_point now) {
  if (finished_ || !started_) return -1;
  if (error_) return drainAfterFailure();
  for (Path& p : paths_)
    if (p.tx.queue && !drainTx(p)) return drainAfterFailure();
  int64_t wait = -1;
  for (Path& p : paths_) {
    if (p.rx.queue) {
      // Until interrupts are armed again, or the frames wait for the transmit side (whose
      // completions wake the loop).
      for (;;) {
        bool armed = false;
        if (!drainRx(p, &armed)) return drainAfterFailure();
        const uint32_t before = p.pendCount;
        if (!passOn(p)) return drainAfterFailure();
        if (armed || p.pendCount == before) break;
      }
      // A frame must not be left waiting on an empty ring (the device used fewer buffers than it said).
      if (p.gathering && p.pendCount == 0 && !p.rx.queue->ring->enableInterrupts()) {
        fail(violation(p, "num_buffers " + std::to_string(p.want) + " in a received frame, but the device used " +
                              std::to_string(p.got) + " buffers for it"),
             p.rx.queue);
        return drainAfterFailure();
      }
    } else {
      generate(p, now);
      if (!stopping_ && rate_ > 0 && allowance_ < 1 && !p.freeTx.empty() && (unlimited_ || remaining_ > 0))
        wait = static_cast<int64_t>(std::ceil((1 - allowance_) / rate_ * 1e9));
    }
    publish(p);
  }
  // A generator that sent its count, or a stop, ends once the device returned everything.
  const bool generatorDone = !unlimited_ && remaining_ == 0;
  if ((stopping_ || (generatorDone &&
                     std::all_of(paths_.begin(), paths_.end(), [](const Path& p) { return p.rx.queue == nullptr; }))) &&
      idle()) {
    // Frames still waiting for the other side go nowhere; their buffers are posted again.
    for (Path& p : paths_) {
      for (; p.pendCount > 0; p.pendCount--, p.pendHead = (p.pendHead + 1) % p.rxSize) {
        repost(p, p.pending[p.pendHead].token);
        stats_.drops++;
      }
      publish(p);
    }
    finished_ = true;
    return -1;
  }
  return wait;
}

}  // namespace vdpa
