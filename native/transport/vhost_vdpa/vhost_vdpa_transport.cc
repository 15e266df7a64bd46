#include "transport/vhost_vdpa/vhost_vdpa_transport.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <utility>

#include "common/checks.h"
#include "common/sys_error.h"
#include "common/syscall.h"
#include "ring/virtio_ring.h"
#include "transport/vhost_vdpa/vdpa_netlink.h"
#include "transport/vhost_vdpa/vhost_vdpa_uapi.h"

// ioctlOrThrow with the request's own name as the syscall label: "ioctl(VHOST_SET_FEATURES)".
#define VDPA_IOCTL(req, arg, ...) ioctlOrThrow(req, arg, #req, ##__VA_ARGS__)

namespace vdpa {

namespace {

constexpr uint64_t backendBit(unsigned n) { return uint64_t{1} << n; }

// Backend features this transport uses when the kernel offers them.
constexpr uint64_t kWantedBackendFeatures =
    backendBit(VHOST_BACKEND_F_IOTLB_MSG_V2) | backendBit(VHOST_BACKEND_F_IOTLB_BATCH) |
    backendBit(VHOST_BACKEND_F_IOTLB_ASID) | backendBit(VHOST_BACKEND_F_SUSPEND) | backendBit(VHOST_BACKEND_F_RESUME) |
    backendBit(VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK) | backendBit(VHOST_BACKEND_F_IOTLB_PERSIST);

// How long reset() waits for the device to report status 0.
constexpr int kResetPollMs = 2000;

std::string openHint(int err) {
  switch (err) {
    case ENOENT:
      return "no such device: is vhost_vdpa loaded? (`modprobe vhost_vdpa`); is the vdpa device bound to "
             "virtio_vdpa instead? (list /sys/bus/vdpa/devices/*/driver)";
    case EACCES:
    case EPERM:
      return "permission denied: run as root, or chmod/chown the device node";
    case EBUSY:
      return "another process owns the device (vhost-vdpa allows one open at a time)";
    case ENODEV:
    case ENXIO:
      return "the device node exists but no vdpa device is behind it (removed or unbound?)";
    default:
      return "";
  }
}

}  // namespace

// ---------------------------------------------------------------- MappedPage

VhostVdpaTransport::MappedPage::MappedPage(MappedPage&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), len_(std::exchange(o.len_, 0)) {}

VhostVdpaTransport::MappedPage& VhostVdpaTransport::MappedPage::operator=(MappedPage&& o) noexcept {
  if (this != &o) {
    release();
    p_ = std::exchange(o.p_, nullptr);
    len_ = std::exchange(o.len_, 0);
  }
  return *this;
}

void VhostVdpaTransport::MappedPage::release() noexcept {
  if (p_) ::munmap(p_, len_);
  p_ = nullptr;
  len_ = 0;
}

// ---------------------------------------------------------------- bring-up

VhostVdpaTransport::VhostVdpaTransport(std::string path) : path_(std::move(path)) {
  const long ps = ::sysconf(_SC_PAGESIZE);
  if (ps > 0) pageSize_ = static_cast<uint64_t>(ps);

  const int fd = retryEintr([&] { return ::open(path_.c_str(), O_RDWR | O_CLOEXEC); });
  if (fd < 0) {
    const int err = errno;
    throwSys(err, "open", path_, openHint(err));
  }
  fd_ = UniqueFd(fd);

  // Ownership first: the kernel refuses IOTLB messages from a non-owner.
  VDPA_IOCTL(VHOST_SET_OWNER, nullptr);

  uint64_t offered = 0;
  VDPA_IOCTL(VHOST_GET_BACKEND_FEATURES, &offered);
  offeredBackendFeatures_ = offered;
  if (!(offered & backendBit(VHOST_BACKEND_F_IOTLB_MSG_V2)))
    throwSys(EOPNOTSUPP, "ioctl(VHOST_GET_BACKEND_FEATURES)", path_,
             "the kernel does not offer VHOST_BACKEND_F_IOTLB_MSG_V2 (needs Linux 5.7 or newer)");
  uint64_t negotiated = offered & kWantedBackendFeatures;
  VDPA_IOCTL(VHOST_SET_BACKEND_FEATURES, &negotiated);
  backendFeatures_ = negotiated;

  vhost_vdpa_iova_range range{};
  const int rerr = ioctlQuiet(VHOST_VDPA_GET_IOVA_RANGE, &range);
  if (rerr == 0 && range.first <= range.last)
    iovaRange_ = IovaRange{range.first, range.last};
  else if (rerr != 0 && rerr != ENOTTY)
    throwSys(rerr, "ioctl(VHOST_VDPA_GET_IOVA_RANGE)", path_, defaultHint(rerr));

  VDPA_IOCTL(VHOST_VDPA_GET_DEVICE_ID, &deviceId_);
  VDPA_IOCTL(VHOST_GET_FEATURES, &deviceFeatures_);
  VDPA_IOCTL(VHOST_VDPA_GET_CONFIG_SIZE, &configSize_);
  uint32_t nvqs = 0;
  VDPA_IOCTL(VHOST_VDPA_GET_VQS_COUNT, &nvqs);
  maxQueues_ = static_cast<uint16_t>(nvqs > 0xffff ? 0xffff : nvqs);
  VDPA_IOCTL(VHOST_VDPA_GET_VRING_NUM, &maxQueueSize_);

  configFd_ = makeEventFd();
  int cfd = configFd_.get();
  VDPA_IOCTL(VHOST_VDPA_SET_CONFIG_CALL, &cfd);

  queues_.resize(maxQueues_);
  doorbells_.resize(maxQueues_);
  doorbellProbed_.assign(maxQueues_, false);
}

VhostVdpaTransport::~VhostVdpaTransport() {
  try {
    teardown(false);
  } catch (...) {
    // Nothing more can be done for a device that no longer answers; closing the fd resets it.
  }
  invalidateAll();
}

// ---------------------------------------------------------------- helpers

int VhostVdpaTransport::ioctlQuiet(unsigned long request, void* arg) { return ioctlErrno(fd_.get(), request, arg); }

void VhostVdpaTransport::ioctlOrThrow(unsigned long request, void* arg, const char* name, const std::string& hint) {
  const int err = ioctlQuiet(request, arg);
  if (err) throwSys(err, std::string("ioctl(") + name + ")", path_, hint.empty() ? defaultHint(err) : hint);
}

std::string VhostVdpaTransport::defaultHint(int err) const {
  switch (err) {
    case ENOTTY:
    case EOPNOTSUPP:
      return "not supported by this kernel's vhost-vdpa or by the vDPA parent driver";
    case ENODEV:
    case ESHUTDOWN:
      return "the vDPA device went away";
    case EIO:
    case ETIMEDOUT:
      return "the vDPA parent did not complete the request (for VDUSE: is the userspace daemon still running?)";
    case EPERM:
      return "this fd does not own the device (VHOST_SET_OWNER failed or was skipped)";
    case ENOBUFS:
      return "queue index out of range for this device (" + std::to_string(maxQueues_) + " queues)";
    default:
      return "";
  }
}

std::string VhostVdpaTransport::rangeText() const {
  return "[" + hex(iovaRange_.first) + ", " + hex(iovaRange_.last) + "]";
}

VhostVdpaTransport::Queue& VhostVdpaTransport::queueChecked(uint16_t index, const char* what) {
  if (index >= queues_.size())
    throwSys(
        EINVAL, what, path_,
        "the device has " + std::to_string(queues_.size()) + " queues; there is no queue " + std::to_string(index));
  return queues_[index];
}

// ---------------------------------------------------------------- features, status, config

uint32_t VhostVdpaTransport::vendorId() {
  if (!vendorIdKnown_) {
    vendorIdKnown_ = true;
    std::string name;
    VdpaDeviceAttrs attrs;
    if (vdpaDeviceName(path_, &name) && vdpaDeviceAttrs(name, &attrs)) vendorId_ = attrs.vendorId;
  }
  return vendorId_;
}

void VhostVdpaTransport::setDriverFeatures(uint64_t features) {
  uint64_t f = features;
  const int err = ioctlQuiet(VHOST_SET_FEATURES, &f);
  if (err == EBUSY)
    throwSys(err, "ioctl(VHOST_SET_FEATURES)", path_,
             "features are fixed once FEATURES_OK is set; reset the device first");
  if (err == EINVAL)
    throwSys(err, "ioctl(VHOST_SET_FEATURES)", path_,
             "the device rejected features " + hex(features) + " (offered: " + hex(deviceFeatures_) + ")");
  if (err) throwSys(err, "ioctl(VHOST_SET_FEATURES)", path_, defaultHint(err));
  driverFeatures_ = features;
}

uint8_t VhostVdpaTransport::status() {
  uint8_t s = 0;
  VDPA_IOCTL(VHOST_VDPA_GET_STATUS, &s);
  return s;
}

void VhostVdpaTransport::setStatus(uint8_t s) {
  if (s == 0) return reset();
  uint8_t v = s;
  VDPA_IOCTL(VHOST_VDPA_SET_STATUS, &v, "a driver may only add status bits (write 0 to reset)");
  // ENABLE_AFTER_DRIVER_OK: the queues whose enable was deferred start now.
  if (s & kStatusDriverOk)
    for (uint16_t i = 0; i < queues_.size(); i++)
      if (queues_[i].enablePending) enableNow(i);
}

void VhostVdpaTransport::reset() { teardown(true); }

void VhostVdpaTransport::teardown(bool strict) {
  uint8_t st = 0;
  const bool known = ioctlQuiet(VHOST_VDPA_GET_STATUS, &st) == 0;
  const bool running = known && (st & kStatusDriverOk);
  // Stop the device before asking where its rings stand, so the answer stays true.
  if (running && hasBackendFeature(VHOST_BACKEND_F_SUSPEND)) ioctlQuiet(VHOST_VDPA_SUSPEND, nullptr);
  for (uint16_t i = 0; i < queues_.size(); i++) {
    if (!queues_[i].setUp || !running) continue;
    vhost_vring_state s{i, 0};
    if (ioctlQuiet(VHOST_GET_VRING_BASE, &s) == 0) queues_[i].savedBase = s.num;
  }

  uint8_t zero = 0;
  int err = ioctlQuiet(VHOST_VDPA_SET_STATUS, &zero);
  const char* failed = "ioctl(VHOST_VDPA_SET_STATUS)";
  if (err == 0) {
    // The kernel resets synchronously, but the virtio rule is "write 0, then read until 0".
    err = ETIMEDOUT;
    failed = "ioctl(VHOST_VDPA_GET_STATUS)";
    for (int waited = 0; waited <= kResetPollMs; waited++) {
      uint8_t now = 0xff;
      const int e = ioctlQuiet(VHOST_VDPA_GET_STATUS, &now);
      if (e) {
        err = e;
        break;
      }
      if (now == 0) {
        err = 0;
        break;
      }
      sleepFor(std::chrono::milliseconds(1));
    }
  }

  // The device no longer uses the queues: unbind their eventfds and forget their setup.
  for (uint16_t i = 0; i < queues_.size(); i++) {
    Queue& q = queues_[i];
    if (q.bound) {
      vhost_vring_file f{i, -1};
      ioctlQuiet(VHOST_SET_VRING_KICK, &f);
      f = vhost_vring_file{i, -1};
      ioctlQuiet(VHOST_SET_VRING_CALL, &f);
    }
    const int64_t saved = q.savedBase;
    q = Queue{};
    q.savedBase = saved;
  }

  if (err && strict)
    throwSys(err, failed, path_,
             err == ETIMEDOUT ? "the device did not report status 0 within " + std::to_string(kResetPollMs) + " ms"
                              : defaultHint(err));
}

void VhostVdpaTransport::readConfig(uint32_t offset, void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize_, "ioctl(VHOST_VDPA_GET_CONFIG)", path_);
  if (len == 0) return;  // the kernel rejects empty reads
  std::vector<uint8_t> b(offsetof(vhost_vdpa_config, buf) + len);
  auto* c = reinterpret_cast<vhost_vdpa_config*>(b.data());
  c->off = offset;
  c->len = len;
  VDPA_IOCTL(VHOST_VDPA_GET_CONFIG, c);
  std::memcpy(buf, b.data() + offsetof(vhost_vdpa_config, buf), len);
}

void VhostVdpaTransport::writeConfig(uint32_t offset, const void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize_, "ioctl(VHOST_VDPA_SET_CONFIG)", path_);
  if (len == 0) return;
  std::vector<uint8_t> b(offsetof(vhost_vdpa_config, buf) + len);
  auto* c = reinterpret_cast<vhost_vdpa_config*>(b.data());
  c->off = offset;
  c->len = len;
  std::memcpy(b.data() + offsetof(vhost_vdpa_config, buf), buf, len);
  VDPA_IOCTL(VHOST_VDPA_SET_CONFIG, c);
}

// ---------------------------------------------------------------- DMA (IOTLB messages)

int VhostVdpaTransport::writeIotlb(uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr) {
  vhost_msg_v2 m;
  std::memset(&m, 0, sizeof m);
  m.type = VHOST_IOTLB_MSG_V2;
  m.asid = 0;
  m.iotlb.iova = iova;
  m.iotlb.size = size;
  m.iotlb.uaddr = uaddr;
  m.iotlb.perm = VHOST_ACCESS_RW;
  m.iotlb.type = type;
  const ssize_t r = retryEintr([&] { return ::write(fd_.get(), &m, sizeof m); });
  if (r < 0) return errno;
  return r == static_cast<ssize_t>(sizeof m) ? 0 : EIO;
}

void VhostVdpaTransport::mapDma(uint64_t iova, void* host, uint64_t len) {
  static const char* kSys = "write(VHOST_IOTLB_UPDATE)";
  if (len == 0 || host == nullptr) throwSys(EINVAL, kSys, path_, "a DMA mapping needs memory and a length");
  const uint64_t last = iova + len - 1;
  // Checked here because the kernel reports every failed IOTLB update as EFAULT, whatever the cause.
  if (last < iova || iova < iovaRange_.first || last > iovaRange_.last)
    throwSys(EINVAL, kSys, path_,
             "IOVA range [" + hex(iova) + ", " + hex(last) + "] is outside the device's range " + rangeText());
  if (mappings_.overlaps(iova, len))
    throwSys(EEXIST, kSys, path_, "IOVA range [" + hex(iova) + ", " + hex(last) + "] overlaps a live mapping");

  const uint64_t uaddr = reinterpret_cast<uintptr_t>(host);
  const int err = writeIotlb(VHOST_IOTLB_UPDATE, iova, len, uaddr);
  if (err) {
    std::string hint;
    if (err == ENOMEM || err == EFAULT)
      hint = memlockHint(len) +
             ". The kernel reports every failed IOTLB update as EFAULT; the device's IOVA range is " + rangeText();
    else if (err == EINVAL)
      hint = "IOVA [" + hex(iova) + ", " + hex(last) + "] outside the device's range " + rangeText();
    else
      hint = defaultHint(err);
    throwSys(err, kSys, path_, hint);
  }
  mappings_.add(iova, host, len);
}

void VhostVdpaTransport::unmapDma(uint64_t iova, uint64_t len) {
  static const char* kSys = "write(VHOST_IOTLB_INVALIDATE)";
  if (!mappings_.contains(iova, len))
    throwSys(EINVAL, kSys, path_, "no mapping of " + hex(len) + " bytes at IOVA " + hex(iova));
  const int err = writeIotlb(VHOST_IOTLB_INVALIDATE, iova, len, 0);
  if (err) throwSys(err, kSys, path_, defaultHint(err));
  mappings_.remove(iova);
}

bool VhostVdpaTransport::beginDmaBatch() {
  if (!hasBackendFeature(VHOST_BACKEND_F_IOTLB_BATCH)) return false;
  if (batchDepth_ == 0) {
    const int err = writeIotlb(VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0);
    if (err) throwSys(err, "write(VHOST_IOTLB_BATCH_BEGIN)", path_, defaultHint(err));
  }
  batchDepth_++;
  return true;
}

void VhostVdpaTransport::endDmaBatch() {
  if (batchDepth_ == 0) return;
  if (--batchDepth_ > 0) return;
  const int err = writeIotlb(VHOST_IOTLB_BATCH_END, 0, 0, 0);
  if (err) throwSys(err, "write(VHOST_IOTLB_BATCH_END)", path_, defaultHint(err));
}

void VhostVdpaTransport::invalidateAll() noexcept {
  if (batchDepth_ > 0) {
    batchDepth_ = 0;
    writeIotlb(VHOST_IOTLB_BATCH_END, 0, 0, 0);
  }
  // Note: the kernel frees an address space when its last mapping goes, after which an INVALIDATE
  // fails; so only ranges known to be live are invalidated.
  for (const auto& m : mappings_) writeIotlb(VHOST_IOTLB_INVALIDATE, m.first, m.second.len, 0);
  mappings_.clear();
}

// ---------------------------------------------------------------- queues

void VhostVdpaTransport::setupQueue(const QueueAddresses& a, int callFd) {
  Queue& q = queueChecked(a.index, "ioctl(VHOST_SET_VRING_NUM)");
  const bool packed = (driverFeatures_ & bit(kFeatureRingPacked)) != 0;
  checkQueueSize(a.size, maxQueueSize_, packed, "ioctl(VHOST_SET_VRING_NUM)", path_);
  if (!hasBackendFeature(VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK) && (status() & kStatusDriverOk))
    throwSys(EBUSY, "ioctl(VHOST_SET_VRING_NUM)", path_,
             "the device is running (DRIVER_OK) and does not offer VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK: set "
             "queues up before start (VDUSE, for one, refuses VHOST_SET_VRING_BASE once running)");
  const unsigned idx = a.index;
  q.bound = true;  // from here on teardown unbinds the eventfds, even if a later step fails

  vhost_vring_file call{idx, callFd};
  VDPA_IOCTL(VHOST_SET_VRING_CALL, &call);
  vhost_vring_state num{idx, a.size};
  VDPA_IOCTL(VHOST_SET_VRING_NUM, &num);
  // Packed rings carry the wrap counters in bit 15 (avail) and bit 31 (used); both start at 1.
  vhost_vring_state base{idx, packed ? 0x80008000u : 0u};
  VDPA_IOCTL(VHOST_SET_VRING_BASE, &base, "the device refused the ring base (is it already running?)");
  vhost_vring_addr addr{};
  addr.index = idx;
  addr.flags = 0;
  addr.desc_user_addr = a.desc;  // IOVAs: vhost-vdpa passes them to the device untranslated
  addr.avail_user_addr = a.driver;
  addr.used_user_addr = a.device;
  VDPA_IOCTL(VHOST_SET_VRING_ADDR, &addr,
             "the device refused ring addresses desc=" + hex(a.desc) + " avail=" + hex(a.driver) +
                 " used=" + hex(a.device) + " (avail must be 2-byte, used 4-byte aligned)");
  UniqueFd kick = makeEventFd();
  vhost_vring_file k{idx, kick.get()};
  VDPA_IOCTL(VHOST_SET_VRING_KICK, &k);

  q.kickFd = std::move(kick);
  q.size = a.size;
  q.setUp = true;
  q.enabled = false;
  q.enablePending = false;
  probeDoorbell(a.index);
}

void VhostVdpaTransport::probeDoorbell(uint16_t index) {
  if (doorbellProbed_[index]) return;
  doorbellProbed_[index] = true;
  // vhost-vdpa hands out queue i's notification page at offset i * page size, write-only and shared;
  // parents without a page-aligned doorbell (VDUSE, for one) refuse the mmap.
  void* p = ::mmap(nullptr, pageSize_, PROT_WRITE, MAP_SHARED, fd_.get(), static_cast<off_t>(index * pageSize_));
  if (p != MAP_FAILED) doorbells_[index] = MappedPage(p, pageSize_);
}

void VhostVdpaTransport::enableNow(uint16_t index) {
  vhost_vring_state s{index, 1};
  VDPA_IOCTL(VHOST_VDPA_SET_VRING_ENABLE, &s);
  queues_[index].enabled = true;
  queues_[index].enablePending = false;
}

void VhostVdpaTransport::enableQueue(uint16_t index) {
  Queue& q = queueChecked(index, "ioctl(VHOST_VDPA_SET_VRING_ENABLE)");
  if (!q.setUp) throwSys(EINVAL, "ioctl(VHOST_VDPA_SET_VRING_ENABLE)", path_, "queue not set up");
  if (q.enabled || q.enablePending) return;
  const bool running = status() & kStatusDriverOk;
  if (hasBackendFeature(VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK)) {
    if (running)
      enableNow(index);
    else
      q.enablePending = true;
    return;
  }
  if (running)
    throwSys(EBUSY, "ioctl(VHOST_VDPA_SET_VRING_ENABLE)", path_,
             "this device needs its queues enabled before DRIVER_OK (it does not offer "
             "VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK); reset and set the queues up again");
  enableNow(index);
}

void VhostVdpaTransport::notify(uint16_t index) {
  if (index >= queues_.size() || !queues_[index].setUp) return;
  if (doorbells_[index].valid()) {
    // Ring writes must be visible before the device sees the doorbell.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    *static_cast<volatile uint16_t*>(doorbells_[index].get()) = index;
    return;
  }
  signalEventFd(queues_[index].kickFd.get());
}

// ---------------------------------------------------------------- low-level extras

void VhostVdpaTransport::suspend() {
  if (!hasBackendFeature(VHOST_BACKEND_F_SUSPEND))
    throwSys(EOPNOTSUPP, "ioctl(VHOST_VDPA_SUSPEND)", path_, "the device does not offer VHOST_BACKEND_F_SUSPEND");
  VDPA_IOCTL(VHOST_VDPA_SUSPEND, nullptr);
}

void VhostVdpaTransport::resume() {
  if (!hasBackendFeature(VHOST_BACKEND_F_RESUME))
    throwSys(EOPNOTSUPP, "ioctl(VHOST_VDPA_RESUME)", path_, "the device does not offer VHOST_BACKEND_F_RESUME");
  VDPA_IOCTL(VHOST_VDPA_RESUME, nullptr);
}

uint32_t VhostVdpaTransport::getVringBase(uint16_t index) {
  queueChecked(index, "ioctl(VHOST_GET_VRING_BASE)");
  vhost_vring_state s{index, 0};
  VDPA_IOCTL(VHOST_GET_VRING_BASE, &s);
  return s.num;
}

int64_t VhostVdpaTransport::savedVringBase(uint16_t index) const {
  return index < queues_.size() ? queues_[index].savedBase : -1;
}

uint32_t VhostVdpaTransport::vqGroup(uint16_t index) {
  queueChecked(index, "ioctl(VHOST_VDPA_GET_VRING_GROUP)");
  vhost_vring_state s{index, 0};
  VDPA_IOCTL(VHOST_VDPA_GET_VRING_GROUP, &s);
  return s.num;
}

uint32_t VhostVdpaTransport::groupCount() {
  uint32_t n = 0;
  VDPA_IOCTL(VHOST_VDPA_GET_GROUP_NUM, &n);
  return n;
}

uint32_t VhostVdpaTransport::asidCount() {
  unsigned int n = 0;
  VDPA_IOCTL(VHOST_VDPA_GET_AS_NUM, &n);
  return n;
}

void VhostVdpaTransport::setGroupAsid(uint32_t group, uint32_t asid) {
  vhost_vring_state s{group, asid};
  const int err = ioctlQuiet(VHOST_VDPA_SET_GROUP_ASID, &s);
  if (err == 0) return;
  std::string hint;
  if (err == EINVAL) {
    unsigned int n = 0;
    hint = "address space " + std::to_string(asid) + " does not exist" +
           (ioctlQuiet(VHOST_VDPA_GET_AS_NUM, &n) == 0 ? " (the device has " + std::to_string(n) + ")" : "");
  } else if (err == ENOBUFS)
    hint = "group " + std::to_string(group) + " is out of range (the kernel checks it against the queue count)";
  else
    hint = defaultHint(err);
  throwSys(err, "ioctl(VHOST_VDPA_SET_GROUP_ASID)", path_, hint);
}

}  // namespace vdpa
