#include "transport/vhost_vdpa/vhost_ioctls.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <utility>
#include <vector>

#include "common/sys_error.h"
#include "common/syscall.h"
#include "transport/vhost_vdpa/vhost_vdpa_uapi.h"

// call() with the request's own name as the syscall label: "ioctl(VHOST_SET_FEATURES)".
#define VDPA_IOCTL(req, arg, ...) call(req, arg, #req, ##__VA_ARGS__)
// A read-only ioctl that fills one value of `type`.
#define VDPA_GET(type, req) get<type>(req, #req)

namespace vdpa {

namespace {

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

// ---------------------------------------------------------------- DoorbellPage

DoorbellPage::DoorbellPage(DoorbellPage&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), len_(std::exchange(o.len_, 0)) {}

DoorbellPage& DoorbellPage::operator=(DoorbellPage&& o) noexcept {
  if (this != &o) {
    release();
    p_ = std::exchange(o.p_, nullptr);
    len_ = std::exchange(o.len_, 0);
  }
  return *this;
}

void DoorbellPage::release() noexcept {
  if (p_) ::munmap(p_, len_);
  p_ = nullptr;
  len_ = 0;
}

// ---------------------------------------------------------------- plumbing

VhostIoctls::VhostIoctls(std::string path) : path_(std::move(path)) {
  const int fd = retryEintr([&] { return ::open(path_.c_str(), O_RDWR | O_CLOEXEC); });
  if (fd < 0) {
    const int err = errno;
    throwSys(err, "open", path_, openHint(err));
  }
  fd_ = UniqueFd(fd);
}

int VhostIoctls::quiet(unsigned long request, void* arg) { return ioctlErrno(fd_.get(), request, arg); }

void VhostIoctls::call(unsigned long request, void* arg, const char* name, const std::string& hint) {
  const int err = quiet(request, arg);
  if (err) throwSys(err, std::string("ioctl(") + name + ")", path_, hint.empty() ? defaultHint(err) : hint);
}

uint32_t VhostIoctls::vringState(unsigned long request, const char* name, unsigned index) {
  vhost_vring_state s{index, 0};
  call(request, &s, name);
  return s.num;
}

std::string VhostIoctls::defaultHint(int err) const {
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
      return "queue index out of range for this device (" + std::to_string(queueCount_) + " queues)";
    default:
      return "";
  }
}

// ---------------------------------------------------------------- device

void VhostIoctls::setOwner() { VDPA_IOCTL(VHOST_SET_OWNER, nullptr); }

uint64_t VhostIoctls::getBackendFeatures() { return VDPA_GET(uint64_t, VHOST_GET_BACKEND_FEATURES); }

void VhostIoctls::setBackendFeatures(uint64_t features) {
  uint64_t f = features;
  VDPA_IOCTL(VHOST_SET_BACKEND_FEATURES, &f);
}

bool VhostIoctls::getIovaRange(IovaRange* range) {
  vhost_vdpa_iova_range r{};
  const int err = quiet(VHOST_VDPA_GET_IOVA_RANGE, &r);
  if (err == ENOTTY) return false;
  if (err) throwSys(err, "ioctl(VHOST_VDPA_GET_IOVA_RANGE)", path_, defaultHint(err));
  *range = IovaRange{r.first, r.last};
  return true;
}

uint32_t VhostIoctls::getDeviceId() { return VDPA_GET(uint32_t, VHOST_VDPA_GET_DEVICE_ID); }

uint64_t VhostIoctls::getFeatures() { return VDPA_GET(uint64_t, VHOST_GET_FEATURES); }

void VhostIoctls::setFeatures(uint64_t features, uint64_t offered) {
  uint64_t f = features;
  const int err = quiet(VHOST_SET_FEATURES, &f);
  if (err == EBUSY)
    throwSys(err, "ioctl(VHOST_SET_FEATURES)", path_,
             "features are fixed once FEATURES_OK is set; reset the device first");
  if (err == EINVAL)
    throwSys(err, "ioctl(VHOST_SET_FEATURES)", path_,
             "the device rejected features " + hex(features) + " (offered: " + hex(offered) + ")");
  if (err) throwSys(err, "ioctl(VHOST_SET_FEATURES)", path_, defaultHint(err));
}

uint32_t VhostIoctls::getConfigSize() { return VDPA_GET(uint32_t, VHOST_VDPA_GET_CONFIG_SIZE); }

uint32_t VhostIoctls::getVqsCount() { return VDPA_GET(uint32_t, VHOST_VDPA_GET_VQS_COUNT); }

uint16_t VhostIoctls::getVringNum() { return VDPA_GET(uint16_t, VHOST_VDPA_GET_VRING_NUM); }

void VhostIoctls::setConfigCall(int fd) {
  int f = fd;
  VDPA_IOCTL(VHOST_VDPA_SET_CONFIG_CALL, &f);
}

uint8_t VhostIoctls::getStatus() { return VDPA_GET(uint8_t, VHOST_VDPA_GET_STATUS); }

int VhostIoctls::getStatusQuiet(uint8_t* status) { return quiet(VHOST_VDPA_GET_STATUS, status); }

void VhostIoctls::setStatus(uint8_t status) {
  uint8_t v = status;
  VDPA_IOCTL(VHOST_VDPA_SET_STATUS, &v, "a driver may only add status bits (write 0 to reset)");
}

int VhostIoctls::setStatusQuiet(uint8_t status) {
  uint8_t v = status;
  return quiet(VHOST_VDPA_SET_STATUS, &v);
}

void VhostIoctls::getConfig(uint32_t offset, void* buf, uint32_t len) {
  std::vector<uint8_t> b(offsetof(vhost_vdpa_config, buf) + len);
  auto* c = reinterpret_cast<vhost_vdpa_config*>(b.data());
  c->off = offset;
  c->len = len;
  VDPA_IOCTL(VHOST_VDPA_GET_CONFIG, c);
  std::memcpy(buf, b.data() + offsetof(vhost_vdpa_config, buf), len);
}

void VhostIoctls::setConfig(uint32_t offset, const void* buf, uint32_t len) {
  std::vector<uint8_t> b(offsetof(vhost_vdpa_config, buf) + len);
  auto* c = reinterpret_cast<vhost_vdpa_config*>(b.data());
  c->off = offset;
  c->len = len;
  std::memcpy(b.data() + offsetof(vhost_vdpa_config, buf), buf, len);
  VDPA_IOCTL(VHOST_VDPA_SET_CONFIG, c);
}

void VhostIoctls::suspend() { VDPA_IOCTL(VHOST_VDPA_SUSPEND, nullptr); }

void VhostIoctls::resume() { VDPA_IOCTL(VHOST_VDPA_RESUME, nullptr); }

uint32_t VhostIoctls::getGroupNum() { return VDPA_GET(uint32_t, VHOST_VDPA_GET_GROUP_NUM); }

uint32_t VhostIoctls::getAsNum() { return VDPA_GET(unsigned int, VHOST_VDPA_GET_AS_NUM); }

void VhostIoctls::setGroupAsid(uint32_t group, uint32_t asid) {
  vhost_vring_state s{group, asid};
  const int err = quiet(VHOST_VDPA_SET_GROUP_ASID, &s);
  if (err == 0) return;
  std::string hint;
  if (err == EINVAL) {
    unsigned int n = 0;
    hint = "address space " + std::to_string(asid) + " does not exist" +
           (quiet(VHOST_VDPA_GET_AS_NUM, &n) == 0 ? " (the device has " + std::to_string(n) + ")" : "");
  } else if (err == ENOBUFS)
    hint = "group " + std::to_string(group) + " is out of range (the kernel checks it against the queue count)";
  else
    hint = defaultHint(err);
  throwSys(err, "ioctl(VHOST_VDPA_SET_GROUP_ASID)", path_, hint);
}

// ---------------------------------------------------------------- queues

void VhostIoctls::setVringCall(unsigned index, int fd) {
  vhost_vring_file f{index, fd};
  VDPA_IOCTL(VHOST_SET_VRING_CALL, &f);
}

void VhostIoctls::setVringNum(unsigned index, unsigned num) {
  vhost_vring_state s{index, num};
  VDPA_IOCTL(VHOST_SET_VRING_NUM, &s);
}

void VhostIoctls::setVringBase(unsigned index, unsigned base) {
  vhost_vring_state s{index, base};
  VDPA_IOCTL(VHOST_SET_VRING_BASE, &s, "the device refused the ring base (is it already running?)");
}

void VhostIoctls::setVringAddr(unsigned index, uint64_t desc, uint64_t avail, uint64_t used) {
  vhost_vring_addr addr{};
  addr.index = index;
  addr.flags = 0;
  addr.desc_user_addr = desc;
  addr.avail_user_addr = avail;
  addr.used_user_addr = used;
  VDPA_IOCTL(VHOST_SET_VRING_ADDR, &addr,
             "the device refused ring addresses desc=" + hex(desc) + " avail=" + hex(avail) + " used=" + hex(used) +
                 " (avail must be 2-byte, used 4-byte aligned)");
}

void VhostIoctls::setVringKick(unsigned index, int fd) {
  vhost_vring_file f{index, fd};
  VDPA_IOCTL(VHOST_SET_VRING_KICK, &f);
}

void VhostIoctls::unbindVring(unsigned index) noexcept {
  vhost_vring_file f{index, -1};
  quiet(VHOST_SET_VRING_KICK, &f);
  f = vhost_vring_file{index, -1};
  quiet(VHOST_SET_VRING_CALL, &f);
}

void VhostIoctls::setVringEnable(unsigned index) {
  vhost_vring_state s{index, 1};
  VDPA_IOCTL(VHOST_VDPA_SET_VRING_ENABLE, &s);
}

uint32_t VhostIoctls::getVringBase(unsigned index) {
  return vringState(VHOST_GET_VRING_BASE, "VHOST_GET_VRING_BASE", index);
}

uint32_t VhostIoctls::getVringGroup(unsigned index) {
  return vringState(VHOST_VDPA_GET_VRING_GROUP, "VHOST_VDPA_GET_VRING_GROUP", index);
}

DoorbellPage VhostIoctls::mapDoorbell(unsigned index, uint64_t pageSize) {
  // vhost-vdpa hands out queue i's notification page at offset i * page size, write-only and shared;
  // parents without a page-aligned doorbell (VDUSE, for one) refuse the mmap.
  void* p = ::mmap(nullptr, pageSize, PROT_WRITE, MAP_SHARED, fd_.get(), static_cast<off_t>(index * pageSize));
  return p == MAP_FAILED ? DoorbellPage() : DoorbellPage(p, pageSize);
}

// ---------------------------------------------------------------- memory

int VhostIoctls::writeIotlb(uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr) {
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

int VhostIoctls::beginIotlbBatch() { return writeIotlb(VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0); }

int VhostIoctls::endIotlbBatch() { return writeIotlb(VHOST_IOTLB_BATCH_END, 0, 0, 0); }

}  // namespace vdpa
