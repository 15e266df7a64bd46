#include "transport/mock/mock_device.h"

#include <poll.h>
#include <sys/epoll.h>

#include "common/sys_error.h"
#include "common/syscall.h"
#include "ring/packed_device_queue.h"
#include "ring/split_device_queue.h"
#include "ring/virtio_ring.h"

namespace vdpa {

namespace {
constexpr uint32_t kStopToken = 0xffffffffu;
constexpr uint32_t kSuspendToken = 0xfffffffeu;
}  // namespace

const std::vector<std::string>& MockDevice::faultNames() {
  static const std::vector<std::string> names{"bad-used-id", "long-used-len",   "used-idx-jump",
                                              "stall",       "reset-in-flight", "no-features-ok"};
  return names;
}

MockDevice::MockDevice(std::string path, MockModel& model, const MockOptions& opts, std::function<void()> needsReset)
    : path_(std::move(path)), model_(model), opts_(opts), needsReset_(std::move(needsReset)) {
  const auto& names = faultNames();
  if (!opts.fault.empty()) {
    size_t i = 0;
    while (i < names.size() && names[i] != opts.fault) i++;
    if (i == names.size()) throwSys(EINVAL, "open", path_, "unknown mock fault '" + opts.fault + "'");
    fault_ = static_cast<Fault>(i + 1);
  }
  queues_.resize(model_.numQueues());
  stopFd_ = makeEventFd();
  suspendFd_ = makeEventFd();
}

MockDevice::~MockDevice() { stopThread(); }

// ---------------------------------------------------------------- memory

void MockDevice::mapDma(uint64_t iova, void* host, uint64_t len) {
  std::unique_lock<std::shared_mutex> lock(mapLock_);
  if (mappings_.overlaps(iova, len)) throwSys(EEXIST, "map_dma", path_, "IOVA range overlaps an existing mapping");
  mappings_.add(iova, host, len);
  mapGeneration_++;
}

void MockDevice::unmapDma(uint64_t iova, uint64_t len) {
  std::unique_lock<std::shared_mutex> lock(mapLock_);
  if (!mappings_.contains(iova, len)) throwSys(EINVAL, "unmap_dma", path_, "no such mapping");
  mappings_.remove(iova);
  mapGeneration_++;
}

uint8_t* MockDevice::translate(uint64_t iova, uint64_t len) {
  // Caller holds mapLock_ (shared).
  return mappings_.translate(iova, len);
}

// ---------------------------------------------------------------- queues

void MockDevice::setupQueue(const QueueAddresses& a, int callFd) {
  QueueState& q = queues_[a.index];
  q.addr = a;
  q.callFd = callFd;
  q.kickFd = makeEventFd();
}

void MockDevice::enableQueue(uint16_t index) {
  if (index >= queues_.size() || !queues_[index].kickFd) throwSys(EINVAL, "enable_queue", path_, "queue not set up");
  queues_[index].enabled = true;
}

void MockDevice::kick(uint16_t index) {
  if (opts_.strictDmaUpdates && !kickPending_.load()) {
    kickGeneration_.store(mapGeneration_.load());
    kickPending_.store(true);
  }
  if (index < queues_.size() && queues_[index].kickFd) signalEventFd(queues_[index].kickFd.get());
}

// ---------------------------------------------------------------- running

void MockDevice::start(uint64_t features) {
  epollFd_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epollFd_) throwErrno("epoll_create1");
  auto watch = [this](int fd, uint32_t token) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = token;
    if (::epoll_ctl(epollFd_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) throwErrno("epoll_ctl");
  };
  watch(stopFd_.get(), kStopToken);
  watch(suspendFd_.get(), kSuspendToken);
  const bool eventIdx = (features & bit(kFeatureRingEventIdx)) != 0;
  packed_ = (features & bit(kFeatureRingPacked)) != 0;
  std::shared_lock<std::shared_mutex> lock(mapLock_);
  for (uint16_t i = 0; i < queues_.size(); i++) {
    QueueState& q = queues_[i];
    if (!q.enabled) continue;
    auto& mem = static_cast<GuestMemory&>(*this);
    if (packed_)
      q.ring =
          std::make_unique<PackedDeviceQueue>(q.addr.size, q.addr.desc, q.addr.driver, q.addr.device, eventIdx, mem);
    else
      q.ring =
          std::make_unique<SplitDeviceQueue>(q.addr.size, q.addr.desc, q.addr.driver, q.addr.device, eventIdx, mem);
    if (!q.ring->valid()) q.dead = true;
    watch(q.kickFd.get(), i);
  }
  lock.unlock();
  drainEventFd(stopFd_.get());
  drainEventFd(suspendFd_.get());
  thread_ = std::thread([this] { deviceLoop(); });
}

void MockDevice::reset() {
  stopThread();
  for (auto& q : queues_) q = QueueState{};
  completed_ = 0;
  packed_ = false;
}

void MockDevice::suspend() {
  if (!thread_.joinable()) return;
  signalEventFd(suspendFd_.get());
  thread_.join();
  epollFd_.reset();
}

void MockDevice::stopThread() {
  if (!thread_.joinable()) return;
  signalEventFd(stopFd_.get());
  thread_.join();
  epollFd_.reset();
}

void MockDevice::giveUp() {
  for (auto& q : queues_) q.dead = true;
  needsReset_();
}

void MockDevice::deviceLoop() {
  std::vector<UsedEntry> done;
  epoll_event events[64];
  // Buffers posted before DRIVER_OK were announced by kicks that may predate the thread.
  bool first = true;
  for (;;) {
    const int n = first ? 0 : retryEintr([&] { return ::epoll_wait(epollFd_.get(), events, 64, -1); });
    if (n < 0) return;
    std::shared_lock<std::shared_mutex> lock(mapLock_);
    // strictDmaUpdates: the chains serviced now were in flight since the kick that announced them.
    const uint64_t since = kickPending_.exchange(false) ? kickGeneration_.load() : mapGeneration_.load();
    done.clear();
    for (int i = 0; i < n; i++) {
      // A suspend stops here too: what earlier rounds took is published, what the kicks announced stays.
      if (events[i].data.u32 == kStopToken || events[i].data.u32 == kSuspendToken) return;
      drainEventFd(queues_[events[i].data.u32].kickFd.get());
    }
    if (first || n > 0) serviceAll(done);
    first = false;
    if (!done.empty() && (opts_.completionDelayMs > 0 || opts_.strictDmaUpdates)) {
      // Held back without the map lock; a stop (reset) ends the wait and drops the batch.
      // strictDmaUpdates: as a VDUSE daemon does, the device works on the chains meanwhile, and gives
      // up on them when the mappings changed while they were in flight (the daemon's would be gone).
      lock.unlock();
      const uint32_t ms = std::max<uint32_t>(opts_.completionDelayMs, opts_.strictDmaUpdates ? 2 : 0);
      pollfd stop{stopFd_.get(), POLLIN, 0};
      if (retryEintr([&] { return ::poll(&stop, 1, static_cast<int>(ms)); }) != 0) return;
      lock.lock();
      if (opts_.strictDmaUpdates && since != mapGeneration_.load()) {
        giveUp();
        continue;
      }
    }
    complete(done);
  }
}

void MockDevice::serviceAll(std::vector<UsedEntry>& done) {
  for (;;) {
    bool held = false;
    for (uint16_t q = 0; q < queues_.size(); q++) held |= serviceQueue(q, done);
    const size_t before = done.size();
    for (uint16_t q = 0; q < queues_.size(); q++)
      if (queues_[q].ring && !queues_[q].dead) model_.drainDeferred(q, done);
    // The driver will not kick a held queue again: once the model made room, go on with it here.
    if (!held || done.size() == before) return;
  }
}

bool MockDevice::serviceQueue(uint16_t index, std::vector<UsedEntry>& done) {
  QueueState& q = queues_[index];
  if (!q.ring || q.dead) return false;
  for (;;) {
    q.ring->disableNotifications();
    for (;;) {
      // A stalled device stops taking chains once `faultAfter` have been let through.
      if (fault_ == Fault::kStall && completed_ + done.size() >= opts_.faultAfter) return false;
      // Backpressure: the chains stay in the ring, notifications off, until serviceAll comes back.
      if (!model_.accepts(index)) return true;
      const auto r = q.ring->pop(chain_);
      if (r == DeviceQueue::Pop::kEmpty) break;
      if (r == DeviceQueue::Pop::kMalformed) {
        // A real device would do the same: stop and ask the driver for a reset.
        giveUp();
        return false;
      }
      if (fault_ == Fault::kResetInFlight && completed_ + done.size() >= opts_.faultAfter) {
        giveUp();
        return false;
      }
      uint32_t len = 0;
      if (model_.handle(index, chain_, &len)) done.push_back(UsedEntry{index, chain_.head, len});
    }
    if (!q.ring->enableNotifications()) return false;
  }
}

void MockDevice::complete(std::vector<UsedEntry>& done) {
  if (done.empty()) return;
  std::vector<bool> touched(queues_.size(), false);
  for (UsedEntry& e : done) {
    QueueState& q = queues_[e.queue];
    if (!q.ring || q.dead) continue;
    const bool faulty = completed_ >= opts_.faultAfter;
    if (faulty && fault_ == Fault::kBadUsedId) e.id = q.addr.size + 3u;
    if (faulty && fault_ == Fault::kLongUsedLen) e.len = 0x7fffffffu;
    // Packed: a whole lap ahead — this used descriptor lands in the right slot with the wrong wrap
    // counter, which no lap of the driver's can explain.
    if (faulty && fault_ == Fault::kUsedIdxJump && packed_) q.ring->corruptUsedIdx(q.addr.size);
    q.ring->push(e.id, e.len);
    if (faulty && fault_ == Fault::kUsedIdxJump && !packed_)
      q.ring->corruptUsedIdx(static_cast<uint16_t>(q.addr.size + 1));
    completed_++;
    touched[e.queue] = true;
  }
  for (uint16_t i = 0; i < queues_.size(); i++)
    if (touched[i] && queues_[i].ring->publish()) signalEventFd(queues_[i].callFd);
}

}  // namespace vdpa
