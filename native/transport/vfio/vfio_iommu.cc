#include "transport/vfio/vfio_iommu.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common/sys_error.h"
#include "common/syscall.h"
#include "transport/vfio/vfio_info.h"

namespace vdpa {

namespace {

// Per-device IOVA window: large enough for any set of pinned buffers, small enough that a 39-bit
// (QEMU's VT-d default) address space still holds several.
constexpr uint64_t kWindowSize = uint64_t{1} << 36;  // 64 GiB

std::string readLinkBase(const std::string& link, bool* exists) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  *exists = n > 0;
  if (n <= 0) return "";
  buf[n] = 0;
  const char* slash = std::strrchr(buf, '/');
  return slash ? slash + 1 : buf;
}

std::string bindHint(const std::string& bdf) {
  const std::string dev = "/sys/bus/pci/devices/" + bdf;
  return "bind it to vfio-pci (as root, after `modprobe vfio-pci`): echo vfio-pci > " + dev +
         "/driver_override; echo " + bdf + " > " + dev + "/driver/unbind; echo " + bdf +
         " > /sys/bus/pci/drivers_probe";
}

// The sysfs facts every VFIO backend needs first: the function exists, an IOMMU covers it, and it is
// bound to vfio-pci. Returns the IOMMU group number.
int checkBinding(const std::string& bdf, const std::string& owner) {
  const std::string dev = "/sys/bus/pci/devices/" + bdf;
  if (::access(dev.c_str(), F_OK) != 0)
    throwSys(ENOENT, "open", owner,
             "no PCI function " + bdf + " (list /sys/bus/pci/devices; the address is domain:bus:slot.function)");
  bool haveDriver = false;
  const std::string driver = readLinkBase(dev + "/driver", &haveDriver);
  bool haveGroup = false;
  const std::string group = readLinkBase(dev + "/iommu_group", &haveGroup);
  if (!haveGroup)
    throwSys(ENODEV, "open", owner,
             "no IOMMU covers " + bdf +
                 " (it has no iommu_group): enable VT-d/AMD-Vi in the firmware; on Intel boot with "
                 "intel_iommu=on (AMD's is on once the firmware enables it); in a QEMU guest add "
                 "-device intel-iommu (q35, kernel-irqchip=split)");
  if (!haveDriver || driver != "vfio-pci")
    throwSys(ENODEV, "open", owner,
             bdf + (haveDriver ? " is bound to " + driver : std::string(" is not bound to any driver")) +
                 ", not vfio-pci: " + bindHint(bdf));
  char* end = nullptr;
  const long n = std::strtol(group.c_str(), &end, 10);
  if (group.empty() || *end != 0 || n < 0) throwSys(EINVAL, "readlink", dev + "/iommu_group", "unexpected group name");
  return static_cast<int>(n);
}

class Type1Container;

// One open /dev/vfio/N attached to the container; closed (and detached) when its last device goes.
struct Group {
  std::shared_ptr<Type1Container> container;
  UniqueFd fd;
  int id = -1;
  ~Group();
};

class Type1Container final : public VfioIommu, public std::enable_shared_from_this<Type1Container> {
 public:
  explicit Type1Container(const std::string& owner) {
    const int fd = retryEintr([] { return ::open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC); });
    if (fd < 0) {
      const int err = errno;
      throwSys(err, "open", "/dev/vfio/vfio",
               err == ENOENT ? "VFIO is not loaded: `modprobe vfio-pci` (needs vfio and vfio_iommu_type1)"
               : (err == EACCES || err == EPERM) ? "permission denied: run as root"
                                                 : "");
    }
    fd_ = UniqueFd(fd);
    const int api = ioctlValue(fd_.get(), VFIO_GET_API_VERSION, 0UL);
    if (api != VFIO_API_VERSION)
      throwSys(api < 0 ? errno : EPROTO, "ioctl(VFIO_GET_API_VERSION)", "/dev/vfio/vfio",
               "unknown VFIO API version " + std::to_string(api));
    if (ioctlValue(fd_.get(), VFIO_CHECK_EXTENSION, static_cast<unsigned long>(VFIO_TYPE1v2_IOMMU)) <= 0)
      throwSys(EOPNOTSUPP, "ioctl(VFIO_CHECK_EXTENSION)", "/dev/vfio/vfio",
               "the kernel offers no VFIO_TYPE1v2_IOMMU: `modprobe vfio_iommu_type1`");
    (void)owner;
  }

  DeviceHandle openDevice(const std::string& bdf, const std::string& owner) override {
    const int groupId = checkBinding(bdf, owner);
    std::shared_ptr<Group> group = attachGroup(groupId, owner);
    DeviceHandle h;
    const int dfd = ioctlValue(group->fd.get(), VFIO_GROUP_GET_DEVICE_FD, reinterpret_cast<unsigned long>(bdf.c_str()));
    if (dfd < 0) {
      const int err = errno;
      throwSys(err, "ioctl(VFIO_GROUP_GET_DEVICE_FD)", owner,
               err == EBUSY ? "the device is already open (another process, or this one, uses it)"
                            : "is " + bdf + " really in IOMMU group " + std::to_string(groupId) + "?");
    }
    h.fd = UniqueFd(dfd);
    h.keepAlive = group;
    return h;
  }

  const std::vector<IovaRange>& iovaRanges() const override { return ranges_; }
  uint64_t pageSizes() const override { return pageSizes_; }

  int map(uint64_t iova, void* host, uint64_t len) override {
    vfio_iommu_type1_dma_map m{};
    m.argsz = sizeof m;
    m.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    m.vaddr = reinterpret_cast<uintptr_t>(host);
    m.iova = iova;
    m.size = len;
    return ioctlErrno(fd_.get(), VFIO_IOMMU_MAP_DMA, &m);
  }

  int unmap(uint64_t iova, uint64_t len) override {
    vfio_iommu_type1_dma_unmap u{};
    u.argsz = sizeof u;
    u.iova = iova;
    u.size = len;
    const int err = ioctlErrno(fd_.get(), VFIO_IOMMU_UNMAP_DMA, &u);
    if (err == 0 && u.size != len) return ENOENT;
    return err;
  }

  void groupGone(int id) {
    std::lock_guard<std::mutex> lk(mu_);
    groups_.erase(id);
    // The kernel releases the IOMMU driver with the container's last group; the next group sets it again.
    if (groups_.empty()) iommuSet_ = false;
  }

 private:
  std::shared_ptr<Group> attachGroup(int id, const std::string& owner) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = groups_.find(id);
    if (it != groups_.end())
      if (auto g = it->second.lock()) return g;

    const std::string gpath = "/dev/vfio/" + std::to_string(id);
    const int fd = retryEintr([&] { return ::open(gpath.c_str(), O_RDWR | O_CLOEXEC); });
    if (fd < 0) {
      const int err = errno;
      std::string hint;
      if (err == ENOENT)
        hint = gpath + " does not exist: is vfio-pci loaded and the device bound to it?";
      else if (err == EACCES || err == EPERM)
        hint = "permission denied: run as root, or give this user " + gpath +
               " (and a RLIMIT_MEMLOCK large enough for the DMA buffers)";
      else if (err == EBUSY)
        hint = "IOMMU group " + std::to_string(id) + " is already open (another process such as QEMU uses it)";
      throwSys(err, "open", gpath, hint);
    }
    auto g = std::make_shared<Group>();
    g->fd = UniqueFd(fd);
    g->id = id;

    vfio_group_status st{};
    st.argsz = sizeof st;
    if (int err = ioctlErrno(fd, VFIO_GROUP_GET_STATUS, &st)) throwSys(err, "ioctl(VFIO_GROUP_GET_STATUS)", gpath);
    if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE))
      throwSys(EPERM, "ioctl(VFIO_GROUP_GET_STATUS)", owner,
               "IOMMU group " + std::to_string(id) + " is not viable: other devices in IOMMU group " +
                   std::to_string(id) +
                   " are still bound to host drivers: bind them to vfio-pci or unbind them (see "
                   "/sys/kernel/iommu_groups/" +
                   std::to_string(id) + "/devices)");
    int cfd = fd_.get();
    if (int err = ioctlErrno(fd, VFIO_GROUP_SET_CONTAINER, &cfd))
      throwSys(err, "ioctl(VFIO_GROUP_SET_CONTAINER)", gpath,
               err == EBUSY ? "the group already belongs to another container" : "");
    // From here on the group detaches itself when it goes.
    g->container = shared_from_this();
    if (!iommuSet_) {
      if (ioctlValue(fd_.get(), VFIO_SET_IOMMU, static_cast<unsigned long>(VFIO_TYPE1v2_IOMMU)) < 0) {
        const int err = errno;
        g->container.reset();
        ioctlValue(fd, VFIO_GROUP_UNSET_CONTAINER, 0UL);
        throwSys(err, "ioctl(VFIO_SET_IOMMU)", "/dev/vfio/vfio", "the IOMMU refused the TYPE1v2 model");
      }
      iommuSet_ = true;
      std::vector<uint8_t> buf;
      if (!queryInfo(&buf)) {
        const int err = errno;
        groups_[id] = g;  // so the Group destructor's groupGone() finds consistent state
        throwSys(err, "ioctl(VFIO_IOMMU_GET_INFO)", "/dev/vfio/vfio");
      }
      computeWindows();
    }
    groups_[id] = g;
    return g;
  }

  // VFIO_IOMMU_GET_INFO with its capability chain: page sizes and usable IOVA ranges.
  bool queryInfo(std::vector<uint8_t>* buf) {
    if (int err =
            vfioGetInfo<vfio_iommu_type1_info>(fd_.get(), VFIO_IOMMU_GET_INFO, buf, [](vfio_iommu_type1_info*) {})) {
      errno = err;
      return false;
    }
    auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf->data());
    if (info->flags & VFIO_IOMMU_INFO_PGSIZES) pageSizes_ = info->iova_pgsizes;
    std::vector<IovaRange> ranges;
    if ((info->flags & VFIO_IOMMU_INFO_CAPS) && info->cap_offset) {
      uint32_t off = info->cap_offset;
      for (int guard = 0; off && guard < 64; guard++) {
        if (off + sizeof(vfio_info_cap_header) > buf->size()) break;
        auto* h = reinterpret_cast<vfio_info_cap_header*>(buf->data() + off);
        if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE &&
            off + sizeof(vfio_iommu_type1_info_cap_iova_range) <= buf->size()) {
          auto* c = reinterpret_cast<vfio_iommu_type1_info_cap_iova_range*>(h);
          const size_t room =
              (buf->size() - off - sizeof(vfio_iommu_type1_info_cap_iova_range)) / sizeof(vfio_iova_range);
          for (uint32_t i = 0; i < c->nr_iovas && i < room; i++)
            ranges.push_back(IovaRange{c->iova_ranges[i].start, c->iova_ranges[i].end});
        }
        off = h->next;
      }
    }
    // Old kernels report no ranges: assume the whole space but keep clear of the x86 MSI window.
    if (ranges.empty()) ranges = {IovaRange{0, 0xfedfffff}, IovaRange{0xfef00000, ~uint64_t{0}}};
    ranges_ = ranges;
    return true;
  }

  std::mutex mu_;
  UniqueFd fd_;
  bool iommuSet_ = false;
  uint64_t pageSizes_ = 4096;
  std::vector<IovaRange> ranges_;
  std::map<int, std::weak_ptr<Group>> groups_;
};

Group::~Group() {
  if (container) {
    ioctlValue(fd.get(), VFIO_GROUP_UNSET_CONTAINER, 0UL);
    fd.reset();
    container->groupGone(id);
  }
}

std::mutex gRegistryMu;
std::weak_ptr<VfioIommu> gContainer;

}  // namespace

std::shared_ptr<VfioIommu> sharedVfioContainer(const std::string& owner) {
  std::lock_guard<std::mutex> lk(gRegistryMu);
  if (auto c = gContainer.lock()) return c;
  auto c = std::make_shared<Type1Container>(owner);
  gContainer = c;
  return c;
}

// ---------------------------------------------------------------- IOVA windows

void VfioIommu::computeWindows() {
  std::lock_guard<std::mutex> lk(windowMu_);
  windows_.clear();
  for (const IovaRange& r : iovaRanges()) {
    uint64_t start = (r.first + kWindowSize - 1) & ~(kWindowSize - 1);
    if (start < r.first) continue;  // wrapped
    while (start != 0 && start <= r.last && r.last - start >= kWindowSize - 1 && windows_.size() < 256) {
      windows_.push_back(IovaRange{start, start + kWindowSize - 1});
      start += kWindowSize;
    }
  }
  if (windows_.empty()) {
    // A small aperture: one window, the largest range (rounded to the mapping granularity).
    const uint64_t pg = pageSizes() ? (pageSizes() & (~pageSizes() + 1)) : 4096;
    IovaRange best{1, 0};
    for (const IovaRange& r : iovaRanges())
      if (best.first > best.last || r.last - r.first > best.last - best.first) best = r;
    if (best.first <= best.last) {
      const uint64_t first = (best.first + pg - 1) & ~(pg - 1);
      const uint64_t last = ((best.last + 1) & ~(pg - 1)) - 1;
      if (first < last) windows_.push_back(IovaRange{first == 0 ? pg : first, last});
    }
  }
  leased_.assign(windows_.size(), false);
}

IovaRange VfioIommu::leaseWindow(const std::string& owner) {
  std::lock_guard<std::mutex> lk(windowMu_);
  for (size_t i = 0; i < windows_.size(); i++) {
    if (!leased_[i]) {
      leased_[i] = true;
      return windows_[i];
    }
  }
  throwSys(ENOSPC, "VFIO_IOMMU_MAP_DMA", owner,
           windows_.empty() ? "the IOMMU reports no usable IOVA range"
                            : "every IOVA window of the shared VFIO container is in use (" +
                                  std::to_string(windows_.size()) + " devices)");
}

void VfioIommu::releaseWindow(const IovaRange& w) {
  std::lock_guard<std::mutex> lk(windowMu_);
  for (size_t i = 0; i < windows_.size(); i++)
    if (windows_[i].first == w.first) leased_[i] = false;
}

}  // namespace vdpa
