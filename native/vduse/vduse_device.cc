#include "vduse/vduse_device.h"

#include <fcntl.h>
#include <linux/vduse.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "common/sys_error.h"
#include "common/syscall.h"
#include "ring/split_device_queue.h"
#include "ring/virtio_ring.h"

namespace vdpa {

namespace {

constexpr uint32_t kStopToken = 0xffffffffu, kDevToken = 0xfffffffeu, kCompleteToken = 0xfffffffdu;
// Chains one queue may take before the thread looks at the kernel's requests again: a reset is
// answered within one such round even while the driver keeps the queues full.
constexpr unsigned kQueueBudget = 128;
constexpr auto kNodeWait = std::chrono::seconds(10);
constexpr auto kDestroyWait = std::chrono::seconds(3);
const char kRootHint[] = "VDUSE needs root (CAP_SYS_ADMIN): run as root";

[[noreturn]] void throwControl(int err, const std::string& syscall, const std::string& path, const std::string& name) {
  std::string hint;
  if (err == EEXIST)
    hint = "a VDUSE device named '" + name + "' exists: pick another name or close the device that has it";
  else if (err == EPERM || err == EACCES)
    hint = kRootHint;
  else if (err == EINVAL)
    hint = "the kernel refused the device configuration (name, features, queue count or config size)";
  throwSys(err, syscall, path, hint);
}

}  // namespace

VduseDevice::VduseDevice(const VduseDeviceConfig& cfg, ChainHandler handler, QueuesStopped stopped)
    : name_(cfg.name),
      devPath_("/dev/vduse/" + cfg.name),
      numQueues_(cfg.numQueues),
      configSize_(static_cast<uint32_t>(cfg.config.size())),
      handler_(std::move(handler)),
      stopped_(std::move(stopped)) {
  if (cfg.name.empty() || cfg.name.size() >= VDUSE_NAME_MAX || cfg.name.find('/') != std::string::npos)
    throwSys(EINVAL, "ioctl(VDUSE_CREATE_DEV)", cfg.controlPath, "the name must be 1 to 255 bytes without '/'");
  controlFd_ = UniqueFd(retryEintr([&] { return ::open(cfg.controlPath.c_str(), O_RDWR | O_CLOEXEC); }));
  if (!controlFd_) {
    const int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      throwSys(err, "open", cfg.controlPath, "load the VDUSE module: modprobe vduse (Linux 5.15+, CONFIG_VDPA_USER)");
    throwControl(err, "open", cfg.controlPath, name_);
  }
  uint64_t version = VDUSE_API_VERSION;
  if (int err = ioctlErrno(controlFd_.get(), VDUSE_SET_API_VERSION, &version))
    throwControl(err, "ioctl(VDUSE_SET_API_VERSION)", cfg.controlPath, name_);

  std::vector<uint8_t> buf(sizeof(vduse_dev_config) + cfg.config.size(), 0);
  auto* dc = reinterpret_cast<vduse_dev_config*>(buf.data());
  std::memcpy(dc->name, cfg.name.data(), cfg.name.size());
  dc->vendor_id = cfg.vendorId;
  dc->device_id = cfg.deviceId;
  dc->features = cfg.features | bit(kFeatureVersion1) | bit(kFeatureAccessPlatform) | bit(kFeatureRingEventIdx) |
                 bit(kFeatureRingIndirectDesc);
  dc->vq_num = cfg.numQueues;
  dc->vq_align = 4096;
  dc->config_size = static_cast<uint32_t>(cfg.config.size());
  std::memcpy(buf.data() + sizeof(vduse_dev_config), cfg.config.data(), cfg.config.size());
  if (int err = ioctlErrno(controlFd_.get(), VDUSE_CREATE_DEV, dc)) {
    if (err != EEXIST || !cfg.reconnect) throwControl(err, "ioctl(VDUSE_CREATE_DEV)", cfg.controlPath, name_);
    resume_ = true;  // the device exists with its own config: take it over
  }
  created_ = true;
  try {
    // The node comes from devtmpfs/udev shortly after the ioctl returns.
    const auto deadline = std::chrono::steady_clock::now() + kNodeWait;
    for (;;) {
      devFd_ = UniqueFd(retryEintr([&] { return ::open(devPath_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC); }));
      if (devFd_) break;
      if (errno == EBUSY) throwSys(EBUSY, "open", devPath_, "another process serves VDUSE device '" + name_ + "'");
      if (errno != ENOENT || std::chrono::steady_clock::now() > deadline) throwControl(errno, "open", devPath_, name_);
      sleepFor(std::chrono::milliseconds(20));
    }
    for (uint32_t i = 0; i < cfg.numQueues && !resume_; i++) {
      vduse_vq_config vq{};
      vq.index = i;
      vq.max_size = cfg.maxQueueSize;
      if (int err = ioctlErrno(devFd_.get(), VDUSE_VQ_SETUP, &vq)) throwSys(err, "ioctl(VDUSE_VQ_SETUP)", devPath_);
    }
    queues_.resize(cfg.numQueues);
    counters_ = std::make_unique<Counters[]>(cfg.numQueues);
    stopFd_ = makeEventFd();
    completeFd_ = makeEventFd();
    epollFd_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
    if (!epollFd_) throwErrno("epoll_create1");
    watch(stopFd_.get(), kStopToken, true);
    watch(devFd_.get(), kDevToken, true);
    watch(completeFd_.get(), kCompleteToken, true);
    thread_ = std::thread([this] { loop(); });
  } catch (...) {
    devFd_.reset();
    char n[VDUSE_NAME_MAX] = {};
    std::memcpy(n, name_.data(), name_.size());
    if (!resume_) ioctlErrno(controlFd_.get(), VDUSE_DESTROY_DEV, n);  // not ours to destroy otherwise
    created_ = false;
    throw;
  }
}

VduseDevice::~VduseDevice() {
  try {
    close();
  } catch (...) {
    // Still attached (EBUSY): the kernel keeps the device until its vdpa device is deleted.
  }
}

VduseQueueStats VduseDevice::stats(uint16_t queue) const {
  VduseQueueStats s;
  if (queue >= numQueues_) return s;
  const Counters& c = counters_[queue];
  s.requests = c.requests.load(std::memory_order_relaxed);
  s.readBytes = c.readBytes.load(std::memory_order_relaxed);
  s.writtenBytes = c.writtenBytes.load(std::memory_order_relaxed);
  return s;
}

void VduseDevice::close() {
  stopThread();
  stopQueues();
  dropMappings();
  devFd_.reset();
  if (!created_) return;
  char n[VDUSE_NAME_MAX] = {};
  std::memcpy(n, name_.data(), name_.size());
  // The kernel refuses while the vdpa device exists or the node is still being released.
  const auto deadline = std::chrono::steady_clock::now() + kDestroyWait;
  for (;;) {
    const int err = ioctlErrno(controlFd_.get(), VDUSE_DESTROY_DEV, n);
    if (err == 0) break;
    if (err != EBUSY || std::chrono::steady_clock::now() > deadline)
      throwSys(err, "ioctl(VDUSE_DESTROY_DEV)", devPath_,
               err == EBUSY ? "the vdpa device '" + name_ + "' still exists: deleteDevice('" + name_ + "') first" : "");
    sleepFor(std::chrono::milliseconds(20));
  }
  created_ = false;
  controlFd_.reset();
}

void VduseDevice::updateConfig(uint32_t offset, const void* bytes, uint32_t len) {
  if (offset > configSize_ || len > configSize_ - offset)
    throwSys(EINVAL, "ioctl(VDUSE_DEV_SET_CONFIG)", devPath_,
             "the config space is " + std::to_string(configSize_) + " bytes");
  if (!devFd_) throwSys(EBADF, "ioctl(VDUSE_DEV_SET_CONFIG)", devPath_, "the device is closed");
  std::vector<uint8_t> buf(sizeof(vduse_config_data) + len);
  auto* data = reinterpret_cast<vduse_config_data*>(buf.data());
  data->offset = offset;
  data->length = len;
  std::memcpy(buf.data() + sizeof(vduse_config_data), bytes, len);
  if (int err = ioctlErrno(devFd_.get(), VDUSE_DEV_SET_CONFIG, data))
    throwSys(err, "ioctl(VDUSE_DEV_SET_CONFIG)", devPath_);
  if (int err = ioctlErrno(devFd_.get(), VDUSE_DEV_INJECT_CONFIG_IRQ, nullptr))
    throwSys(err, "ioctl(VDUSE_DEV_INJECT_CONFIG_IRQ)", devPath_);
}

void VduseDevice::complete(uint64_t token, ChainFinish finish) {
  {
    std::lock_guard<std::mutex> lock(completionsLock_);
    completions_.push_back(Completion{token, std::move(finish), nullptr});
  }
  signalEventFd(completeFd_.get());
}

void VduseDevice::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(completionsLock_);
    completions_.push_back(Completion{0, nullptr, std::move(task)});
  }
  signalEventFd(completeFd_.get());
}

uint16_t VduseDevice::ringSize(uint16_t q) const {
  return q < queues_.size() && queues_[q].ring && !queues_[q].dead ? queues_[q].ring->size() : 0;
}

void VduseDevice::serviceNow(uint16_t q) {
  if (q < queues_.size()) serviceQueue(q, kQueueBudget);
}

// ---------------------------------------------------------------- memory

uint8_t* VduseDevice::translate(uint64_t iova, uint64_t len) {
  auto fits = [&](const Mapping& m) {
    return iova >= m.start && iova <= m.last && (len == 0 || len - 1 <= m.last - iova);
  };
  auto it = mappings_.upper_bound(iova);
  if (it != mappings_.begin()) {
    Mapping& m = std::prev(it)->second;
    if (iova <= m.last) {
      if (!fits(m)) return nullptr;
      m.pinned |= pinning_;
      return m.host + (iova - m.start);
    }
  }
  // A miss: ask the kernel which mapping holds `iova` and map its file range.
  vduse_iotlb_entry e{};
  e.start = e.last = iova;
  const int fd = retryEintr([&] { return ::ioctl(devFd_.get(), VDUSE_IOTLB_GET_FD, &e); });
  if (fd < 0) return nullptr;
  UniqueFd owned(fd);
  if (e.start > iova || e.last < iova || e.last - e.start >= (uint64_t{1} << 47)) return nullptr;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t pageOff = e.offset % page;
  const size_t length = static_cast<size_t>(e.last - e.start + 1 + pageOff);
  // Read-only memory is mapped copy-on-write: a lying driver that hands it out as device-writable
  // gets its write into a private copy, never into its memory and never a crash here.
  const bool readOnly = (e.perm & VDUSE_ACCESS_WO) == 0;
  void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, readOnly ? MAP_PRIVATE : MAP_SHARED, fd,
                      static_cast<off_t>(e.offset - pageOff));
  if (base == MAP_FAILED) return nullptr;
  Mapping m;
  m.start = e.start;
  m.last = e.last;
  m.base = base;
  m.length = length;
  m.host = static_cast<uint8_t*>(base) + pageOff;
  m.pinned = pinning_;
  // A stale entry overlapping the new one (the kernel changed the layout without telling us first).
  invalidate(m.start, m.last);
  Mapping& stored = mappings_[m.start] = m;
  return fits(stored) ? stored.host + (iova - stored.start) : nullptr;
}

void VduseDevice::unmap(Mapping& m) {
  if (m.base) ::munmap(m.base, m.length);
  m.base = nullptr;
}

void VduseDevice::invalidate(uint64_t start, uint64_t last) {
  for (auto it = mappings_.begin(); it != mappings_.end();) {
    Mapping& m = it->second;
    if (m.last < start || m.start > last) {
      ++it;
      continue;
    }
    // A running ring keeps pointers into it: keep the memory mapped (it stays valid memory of ours)
    // until the rings are gone.
    if ((m.pinned && running_) || heldByDeferred(m))
      retired_.push_back(m);
    else
      unmap(m);
    it = mappings_.erase(it);
  }
}

bool VduseDevice::heldByDeferred(const Mapping& m) const {
  const uint8_t* begin = m.host;
  const uint8_t* end = m.host + (m.last - m.start) + 1;
  const auto inside = [&](const std::vector<DeviceBuffer>& bufs) {
    for (const DeviceBuffer& b : bufs)
      if (b.data >= begin && b.data < end) return true;
    return false;
  };
  for (const auto& [token, d] : deferred_)
    if (inside(d.chain.readable) || inside(d.chain.writable)) return true;
  return false;
}

void VduseDevice::dropMappings() {
  for (auto& [start, m] : mappings_) unmap(m);
  mappings_.clear();
  for (Mapping& m : retired_) unmap(m);
  retired_.clear();
}

// ---------------------------------------------------------------- the request thread

void VduseDevice::watch(int fd, uint32_t token, bool add) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = token;
  if (::epoll_ctl(epollFd_.get(), add ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) < 0 && add) throwErrno("epoll_ctl");
}

void VduseDevice::stopThread() {
  if (!thread_.joinable()) return;
  signalEventFd(stopFd_.get());
  thread_.join();
}

void VduseDevice::loop() {
  epoll_event events[64];
  bool more = false;  // a queue used up its budget: look again without sleeping
  if (resume_) {
    // The kernel re-sends what the dead process had read and not answered; DRIVER_OK came before.
    startQueues();
    more = true;
  }
  for (;;) {
    const int n = retryEintr([&] { return ::epoll_wait(epollFd_.get(), events, 64, more ? 0 : -1); });
    if (n < 0) return;
    for (int i = 0; i < n; i++) {
      const uint32_t token = events[i].data.u32;
      if (token == kStopToken) return;
      if (token == kDevToken) {
        try {
          handleRequests();
        } catch (...) {
          return;  // the device node failed: nothing more can be answered
        }
      } else if (token == kCompleteToken) {
        drainEventFd(completeFd_.get());
        finishDeferred();
      } else if (token < queues_.size() && queues_[token].kickFd) {
        drainEventFd(queues_[token].kickFd.get());
        queues_[token].pending = true;
      }
    }
    more = false;
    for (uint16_t q = 0; q < queues_.size(); q++)
      if (queues_[q].pending) more |= serviceQueue(q, kQueueBudget);
    publishTouched();
  }
}

void VduseDevice::handleRequests() {
  for (;;) {
    vduse_dev_request req{};
    const ssize_t r = retryEintr([&] { return ::read(devFd_.get(), &req, sizeof req); });
    if (r < 0 && errno == EAGAIN) return;
    if (r != static_cast<ssize_t>(sizeof req)) throwErrno("read", devPath_);
    vduse_dev_response resp{};
    resp.request_id = req.request_id;
    resp.result = VDUSE_REQ_RESULT_OK;
    switch (req.type) {
      case VDUSE_GET_VQ_STATE: {
        const uint32_t index = req.vq_state.index;
        resp.vq_state.index = index;
        if (index < queues_.size())
          resp.vq_state.split.avail_index = queues_[index].lastAvail;
        else
          resp.result = VDUSE_REQ_RESULT_FAILED;
        break;
      }
      case VDUSE_SET_STATUS:
        setStatus(req.s.status);
        break;
      case VDUSE_UPDATE_IOTLB:
        invalidate(req.iova.start, req.iova.last);
        break;
      default:
        resp.result = VDUSE_REQ_RESULT_FAILED;
    }
    if (retryEintr([&] { return ::write(devFd_.get(), &resp, sizeof resp); }) != static_cast<ssize_t>(sizeof resp))
      throwErrno("write", devPath_);
  }
}

void VduseDevice::setStatus(uint8_t status) {
  if ((status & kStatusDriverOk) && !running_) {
    startQueues();
  } else if (!(status & kStatusDriverOk) && running_) {
    stopQueues();
  }
  if (status == 0) {
    // Reset: the driver's memory layout starts over; queue state too.
    dropMappings();
    for (Queue& q : queues_) q = Queue{};
  }
}

void VduseDevice::startQueues() {
  uint64_t features = 0;
  if (ioctlErrno(devFd_.get(), VDUSE_DEV_GET_FEATURES, &features) != 0) return;
  const bool eventIdx = (features & bit(kFeatureRingEventIdx)) != 0;
  negotiated_.store(features, std::memory_order_release);
  running_ = true;
  for (uint32_t i = 0; i < queues_.size(); i++) {
    Queue& q = queues_[i];
    vduse_vq_info info{};
    info.index = i;
    if (ioctlErrno(devFd_.get(), VDUSE_VQ_GET_INFO, &info) != 0 || !info.ready) continue;
    pinning_ = true;
    auto& mem = static_cast<GuestMemory&>(*this);
    q.ring = std::make_unique<SplitDeviceQueue>(static_cast<uint16_t>(info.num), info.desc_addr, info.driver_addr,
                                                info.device_addr, eventIdx, mem);
    // The split ring resumes from the used index it finds; GET_VQ_STATE counts on from there.
    const uint8_t* usedIdx = translate(info.device_addr + 2, 2);
    pinning_ = false;
    q.lastAvail = usedIdx ? loadAcquire(reinterpret_cast<const uint16_t*>(usedIdx)) : info.split.avail_index;
    q.dead = !q.ring->valid();
    try {
      q.kickFd = makeEventFd();
      watch(q.kickFd.get(), i, true);
    } catch (const SysError&) {
      q.dead = true;
      continue;
    }
    vduse_vq_eventfd ev{};
    ev.index = i;
    ev.fd = q.kickFd.get();
    if (ioctlErrno(devFd_.get(), VDUSE_VQ_SETUP_KICKFD, &ev) != 0) q.dead = true;
    q.pending = true;  // buffers posted before DRIVER_OK
  }
}

void VduseDevice::stopQueues() {
  for (uint32_t i = 0; i < queues_.size(); i++) {
    Queue& q = queues_[i];
    if (q.kickFd) {
      if (devFd_) {
        vduse_vq_eventfd ev{};
        ev.index = i;
        ev.fd = VDUSE_EVENTFD_DEASSIGN;
        ioctlErrno(devFd_.get(), VDUSE_VQ_SETUP_KICKFD, &ev);
      }
      if (epollFd_) watch(q.kickFd.get(), i, false);
      q.kickFd.reset();
    }
    q.ring.reset();
    q.pending = false;
  }
  // Chains a handler still holds are forgotten: their completions find nothing to finish.
  deferred_.clear();
  if (stopped_) stopped_();
  negotiated_.store(0, std::memory_order_release);
  running_ = false;
  for (Mapping& m : retired_) unmap(m);
  retired_.clear();
  for (auto& [start, m] : mappings_) m.pinned = false;
}

bool VduseDevice::serviceQueue(uint16_t index, unsigned budget) {
  Queue& q = queues_[index];
  q.pending = false;
  if (!q.ring || q.dead) return false;
  bool left = false;
  for (;;) {
    q.ring->disableNotifications();
    while (budget > 0) {
      const auto r = q.ring->pop(chain_);
      if (r == DeviceQueue::Pop::kEmpty) break;
      if (r == DeviceQueue::Pop::kMalformed) {
        // VDUSE has no way to set NEEDS_RESET: the queue stops; a reset revives it.
        q.dead = true;
        break;
      }
      budget--;
      q.lastAvail++;
      const uint64_t token = nextToken_++;
      const uint32_t len = handler_(index, chain_, token);
      if (len == kDeferred) {
        deferred_.emplace(token, Deferred{index, chain_});
        continue;
      }
      q.ring->push(chain_.head, len);
      count(index, chain_, len);
    }
    if (q.dead) break;
    if (budget == 0) {
      left = q.pending = true;
      break;
    }
    if (!q.ring->enableNotifications()) break;
  }
  q.unpublished = false;
  if (q.ring->publish()) {
    uint32_t i = index;
    ioctlErrno(devFd_.get(), VDUSE_VQ_INJECT_IRQ, &i);
  }
  return left;
}

void VduseDevice::count(uint16_t queue, const DeviceChain& chain, uint32_t len) {
  Counters& c = counters_[queue];
  c.requests.fetch_add(1, std::memory_order_relaxed);
  c.readBytes.fetch_add(chain.readableBytes, std::memory_order_relaxed);
  c.writtenBytes.fetch_add(len, std::memory_order_relaxed);
}

bool VduseDevice::completeNow(uint64_t token, const ChainFinish& finish) {
  auto it = deferred_.find(token);
  if (it == deferred_.end()) return false;
  Deferred d = std::move(it->second);
  deferred_.erase(it);
  Queue& q = queues_[d.queue];
  if (!q.ring || q.dead) return false;
  const uint32_t len = finish(d.chain);
  q.ring->push(d.chain.head, len);
  count(d.queue, d.chain, len);
  q.unpublished = true;
  return true;
}

void VduseDevice::finishDeferred() {
  std::vector<Completion> batch;
  {
    std::lock_guard<std::mutex> lock(completionsLock_);
    batch.swap(completions_);
  }
  for (Completion& c : batch) {
    if (c.task)
      c.task();
    else
      completeNow(c.token, c.finish);
  }
  releaseRetired();
  publishTouched();
}

// Memory invalidated while a chain pointed into it goes once no deferred chain does.
void VduseDevice::releaseRetired() {
  for (auto it = retired_.begin(); it != retired_.end();) {
    if ((it->pinned && running_) || heldByDeferred(*it)) {
      ++it;
      continue;
    }
    unmap(*it);
    it = retired_.erase(it);
  }
}

void VduseDevice::publishTouched() {
  for (uint16_t i = 0; i < queues_.size(); i++) {
    Queue& q = queues_[i];
    if (!q.unpublished) continue;
    q.unpublished = false;
    if (!q.ring || !q.ring->publish()) continue;
    uint32_t index = i;
    ioctlErrno(devFd_.get(), VDUSE_VQ_INJECT_IRQ, &index);
  }
}

}  // namespace vdpa
