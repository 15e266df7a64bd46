#include "transport/mock/mock_transport.h"

#include <sys/epoll.h>

#include <cstring>

#include "common/checks.h"
#include "common/sys_error.h"
#include "common/syscall.h"
#include "ring/packed_device_queue.h"
#include "ring/virtio_ring.h"
#include "transport/mock/mock_blk.h"
#include "transport/mock/mock_net.h"

namespace vdpa {

namespace {
constexpr uint32_t kStopToken = 0xffffffffu;
}

const std::vector<std::string>& MockTransport::faultNames() {
  static const std::vector<std::string> names{"bad-used-id", "long-used-len",   "used-idx-jump",
                                              "stall",       "reset-in-flight", "no-features-ok"};
  return names;
}

MockTransport::MockTransport(std::string path, const MockOptions& opts) : path_(std::move(path)), opts_(opts) {
  if (opts.model == "blk")
    model_ = std::make_unique<MockBlk>(opts);
  else if (opts.model == "net")
    model_ = std::make_unique<MockNet>(opts);
  else
    throwSys(EINVAL, "open", path_, "unknown device spec: known mock devices are mock:blk and mock:net");
  const auto& names = faultNames();
  if (!opts.fault.empty()) {
    size_t i = 0;
    while (i < names.size() && names[i] != opts.fault) i++;
    if (i == names.size()) throwSys(EINVAL, "open", path_, "unknown mock fault '" + opts.fault + "'");
    fault_ = static_cast<Fault>(i + 1);
  }
  queues_.resize(model_->numQueues());
  configFd_ = makeEventFd();
  stopFd_ = makeEventFd();
}

MockTransport::~MockTransport() { stopThread(); }

uint64_t MockTransport::deviceFeatures() {
  return model_->features() | bit(kFeatureVersion1) | bit(kFeatureAccessPlatform) | bit(kFeatureRingEventIdx) |
         bit(kFeatureRingIndirectDesc) | bit(kFeatureRingPacked);
}

void MockTransport::setDriverFeatures(uint64_t features) {
  const uint8_t s = status_.load();
  if (!(s & kStatusDriver) || (s & kStatusFeaturesOk))
    throwSys(EPERM, "set_features", path_, "features can only be set between DRIVER and FEATURES_OK");
  driverFeatures_ = features;
}

void MockTransport::setStatus(uint8_t s) {
  if (s == 0) return reset();
  const uint8_t old = status_.load();
  if ((old & ~s) & ~kStatusNeedsReset)
    throwSys(EINVAL, "set_status", path_, "a driver may only add status bits; write 0 to reset");
  if ((s & kStatusFeaturesOk) && !(old & kStatusFeaturesOk)) {
    // The device accepts only features it offered, and (fault) maybe nothing at all.
    if (fault_ == Fault::kNoFeaturesOk || (driverFeatures_ & ~deviceFeatures()) != 0)
      s = static_cast<uint8_t>(s & ~kStatusFeaturesOk);
  }
  if ((s & kStatusDriverOk) && !(old & kStatusDriverOk)) {
    if (!(s & kStatusFeaturesOk)) throwSys(EINVAL, "set_status", path_, "DRIVER_OK before FEATURES_OK");
    status_.store(s);
    startThread();
    return;
  }
  status_.store(static_cast<uint8_t>(s | (old & kStatusNeedsReset)));
}

void MockTransport::reset() {
  stopThread();
  for (auto& q : queues_) q = QueueState{};
  model_->reset();
  driverFeatures_ = 0;
  completed_ = 0;
  status_.store(0);
}

uint32_t MockTransport::configSize() { return static_cast<uint32_t>(model_->config().size()); }

void MockTransport::readConfig(uint32_t offset, void* buf, uint32_t len) {
  const auto cfg = model_->config();
  checkConfigRange(offset, len, cfg.size(), "read_config", path_);
  std::memcpy(buf, cfg.data() + offset, len);
}

void MockTransport::writeConfig(uint32_t offset, const void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize(), "write_config", path_);
  model_->writeConfig(offset, buf, len);
}

void MockTransport::mapDma(uint64_t iova, void* host, uint64_t len) {
  std::unique_lock<std::shared_mutex> lock(mapLock_);
  if (mappings_.overlaps(iova, len)) throwSys(EEXIST, "map_dma", path_, "IOVA range overlaps an existing mapping");
  mappings_.add(iova, host, len);
}

void MockTransport::unmapDma(uint64_t iova, uint64_t len) {
  std::unique_lock<std::shared_mutex> lock(mapLock_);
  if (!mappings_.contains(iova, len)) throwSys(EINVAL, "unmap_dma", path_, "no such mapping");
  mappings_.remove(iova);
}

uint8_t* MockTransport::translate(uint64_t iova, uint64_t len) {
  // Caller holds mapLock_ (shared).
  return mappings_.translate(iova, len);
}

void MockTransport::setupQueue(const QueueAddresses& a, int callFd) {
  if (a.index >= queues_.size()) throwSys(EINVAL, "setup_queue", path_, "no such queue");
  if (status_.load() & kStatusDriverOk) throwSys(EBUSY, "setup_queue", path_, "device is running");
  QueueState& q = queues_[a.index];
  q.addr = a;
  q.callFd = callFd;
  q.kickFd = makeEventFd();
}

void MockTransport::enableQueue(uint16_t index) {
  if (index >= queues_.size() || !queues_[index].kickFd) throwSys(EINVAL, "enable_queue", path_, "queue not set up");
  queues_[index].enabled = true;
}

void MockTransport::notify(uint16_t index) {
  if (index < queues_.size() && queues_[index].kickFd) signalEventFd(queues_[index].kickFd.get());
}

void MockTransport::startThread() {
  epollFd_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epollFd_) throwErrno("epoll_create1");
  auto watch = [this](int fd, uint32_t token) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = token;
    if (::epoll_ctl(epollFd_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) throwErrno("epoll_ctl");
  };
  watch(stopFd_.get(), kStopToken);
  const bool eventIdx = (driverFeatures_ & bit(kFeatureRingEventIdx)) != 0;
  const bool packed = (driverFeatures_ & bit(kFeatureRingPacked)) != 0;
  std::shared_lock<std::shared_mutex> lock(mapLock_);
  for (uint16_t i = 0; i < queues_.size(); i++) {
    QueueState& q = queues_[i];
    if (!q.enabled) continue;
    if (packed)
      q.ring = std::make_unique<PackedDeviceQueue>(q.addr.size, q.addr.desc, q.addr.driver, q.addr.device, eventIdx,
                                                   static_cast<GuestMemory&>(*this));
    else
      q.ring = std::make_unique<SplitDeviceQueue>(q.addr.size, q.addr.desc, q.addr.driver, q.addr.device, eventIdx,
                                                  static_cast<GuestMemory&>(*this));
    if (!q.ring->valid()) q.dead = true;
    watch(q.kickFd.get(), i);
  }
  lock.unlock();
  drainEventFd(stopFd_.get());
  thread_ = std::thread([this] { deviceLoop(); });
}

void MockTransport::stopThread() {
  if (!thread_.joinable()) return;
  signalEventFd(stopFd_.get());
  thread_.join();
  epollFd_.reset();
}

void MockTransport::needsReset() {
  for (auto& q : queues_) q.dead = true;
  status_.fetch_or(kStatusNeedsReset);
  signalEventFd(configFd_.get());
}

void MockTransport::deviceLoop() {
  std::vector<UsedEntry> done;
  epoll_event events[64];
  // Buffers posted before DRIVER_OK were announced by kicks that may predate the thread.
  bool first = true;
  for (;;) {
    const int n = first ? 0 : retryEintr([&] { return ::epoll_wait(epollFd_.get(), events, 64, -1); });
    if (n < 0) return;
    std::shared_lock<std::shared_mutex> lock(mapLock_);
    done.clear();
    for (int i = 0; i < n; i++) {
      if (events[i].data.u32 == kStopToken) return;
      drainEventFd(queues_[events[i].data.u32].kickFd.get());
    }
    if (first || n > 0) {
      for (uint16_t q = 0; q < queues_.size(); q++) serviceQueue(q, done);
      for (uint16_t q = 0; q < queues_.size(); q++)
        if (queues_[q].ring && !queues_[q].dead) model_->drainDeferred(q, done);
    }
    first = false;
    complete(done);
  }
}

void MockTransport::serviceQueue(uint16_t index, std::vector<UsedEntry>& done) {
  QueueState& q = queues_[index];
  if (!q.ring || q.dead) return;
  for (;;) {
    q.ring->disableNotifications();
    for (;;) {
      // A stalled device stops taking chains once `faultAfter` have been let through.
      if (fault_ == Fault::kStall && completed_ + done.size() >= opts_.faultAfter) return;
      const auto r = q.ring->pop(chain_);
      if (r == DeviceQueue::Pop::kEmpty) break;
      if (r == DeviceQueue::Pop::kMalformed) {
        // A real device would do the same: stop and ask the driver for a reset.
        needsReset();
        return;
      }
      if (fault_ == Fault::kResetInFlight && completed_ + done.size() >= opts_.faultAfter) {
        needsReset();
        return;
      }
      uint32_t len = 0;
      if (model_->handle(index, chain_, &len)) done.push_back(UsedEntry{index, chain_.head, len});
    }
    if (!q.ring->enableNotifications()) return;
  }
}

void MockTransport::complete(std::vector<UsedEntry>& done) {
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
    const bool packed = (driverFeatures_ & bit(kFeatureRingPacked)) != 0;
    if (faulty && fault_ == Fault::kUsedIdxJump && packed) q.ring->corruptUsedIdx(q.addr.size);
    q.ring->push(e.id, e.len);
    if (faulty && fault_ == Fault::kUsedIdxJump && !packed)
      q.ring->corruptUsedIdx(static_cast<uint16_t>(q.addr.size + 1));
    completed_++;
    touched[e.queue] = true;
  }
  for (uint16_t i = 0; i < queues_.size(); i++)
    if (touched[i] && queues_[i].ring->publish()) signalEventFd(queues_[i].callFd);
}

}  // namespace vdpa
