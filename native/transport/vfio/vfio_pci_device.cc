#include "transport/vfio/vfio_pci_device.h"

#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "common/checks.h"
#include "common/sys_error.h"
#include "common/syscall.h"
#include "transport/vfio/vfio_info.h"

namespace vdpa {

// ---------------------------------------------------------------- Mapping

VfioPciDevice::Mapping::Mapping(Mapping&& o) noexcept
    : offset_(o.offset_), p_(std::exchange(o.p_, nullptr)), len_(std::exchange(o.len_, 0)) {}

VfioPciDevice::Mapping& VfioPciDevice::Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (p_) ::munmap(p_, len_);
    offset_ = o.offset_;
    p_ = std::exchange(o.p_, nullptr);
    len_ = std::exchange(o.len_, 0);
  }
  return *this;
}

VfioPciDevice::Mapping::~Mapping() {
  if (p_) ::munmap(p_, len_);
}

// ---------------------------------------------------------------- open

VfioPciDevice::VfioPciDevice(std::shared_ptr<VfioIommu> iommu, const std::string& bdf, const std::string& owner)
    : owner_(owner), iommu_(std::move(iommu)) {
  for (unsigned bar = 0; bar < kBars; bar++) barWindows_[bar].bind(this, bar);
  handle_ = iommu_->openDevice(bdf, owner_);
  const int fd = handle_.fd.get();

  vfio_device_info info{};
  info.argsz = sizeof info;
  if (int err = ioctlErrno(fd, VFIO_DEVICE_GET_INFO, &info)) throwSys(err, "ioctl(VFIO_DEVICE_GET_INFO)", owner_);
  if (!(info.flags & VFIO_DEVICE_FLAGS_PCI))
    throwSys(ENODEV, "ioctl(VFIO_DEVICE_GET_INFO)", owner_, "not a vfio-pci device");
  if (info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
    throwSys(ENODEV, "ioctl(VFIO_DEVICE_GET_INFO)", owner_, "the device has no config region");
  canReset_ = info.flags & VFIO_DEVICE_FLAGS_RESET;

  std::vector<uint8_t> buf;
  if (!regionInfo(VFIO_PCI_CONFIG_REGION_INDEX, &buf))
    throwSys(ENODEV, "ioctl(VFIO_DEVICE_GET_REGION_INFO)", owner_, "the device has no config region");
  auto* cfg = reinterpret_cast<vfio_region_info*>(buf.data());
  configOffset_ = cfg->offset;
  configSize_ = cfg->size;

  for (unsigned bar = 0; bar < kBars; bar++) {
    if (!regionInfo(VFIO_PCI_BAR0_REGION_INDEX + bar, &buf)) continue;
    auto* r = reinterpret_cast<vfio_region_info*>(buf.data());
    bars_[bar].size = r->size;
    bars_[bar].fdOffset = r->offset;
    bars_[bar].flags = r->flags;
    if (r->size > 0 && (r->flags & VFIO_REGION_INFO_FLAG_MMAP)) mapBar(bar, buf);
  }

  if (info.num_irqs > VFIO_PCI_MSIX_IRQ_INDEX) {
    vfio_irq_info irq{};
    irq.argsz = sizeof irq;
    irq.index = VFIO_PCI_MSIX_IRQ_INDEX;
    if (ioctlErrno(fd, VFIO_DEVICE_GET_IRQ_INFO, &irq) == 0 && (irq.flags & VFIO_IRQ_INFO_EVENTFD))
      msixCount_ = irq.count;
  }
  if (info.num_irqs > VFIO_PCI_INTX_IRQ_INDEX) {
    vfio_irq_info irq{};
    irq.argsz = sizeof irq;
    irq.index = VFIO_PCI_INTX_IRQ_INDEX;
    if (ioctlErrno(fd, VFIO_DEVICE_GET_IRQ_INFO, &irq) == 0 && (irq.flags & VFIO_IRQ_INFO_EVENTFD) && irq.count == 1)
      hasIntx_ = true;
  }
}

VfioPciDevice::~VfioPciDevice() {
  disableMsix();
  disableIntx();
}

bool VfioPciDevice::regionInfo(uint32_t index, std::vector<uint8_t>* buf) {
  const int err = vfioGetInfo<vfio_region_info>(handle_.fd.get(), VFIO_DEVICE_GET_REGION_INFO, buf,
                                                [index](vfio_region_info* r) { r->index = index; });
  if (err == EINVAL) return false;
  if (err) throwSys(err, "ioctl(VFIO_DEVICE_GET_REGION_INFO)", owner_);
  return true;
}

void VfioPciDevice::mapBar(unsigned bar, const std::vector<uint8_t>& info) {
  auto* r = reinterpret_cast<const vfio_region_info*>(info.data());
  // Areas that may be mmap'd: the sparse list when VFIO gives one (it carves out the MSI-X table),
  // else the whole BAR.
  std::vector<std::pair<uint64_t, uint64_t>> areas;
  bool sparse = false;
  if ((r->flags & VFIO_REGION_INFO_FLAG_CAPS) && r->cap_offset) {
    uint32_t off = r->cap_offset;
    for (int guard = 0; off && guard < 32 && off + sizeof(vfio_info_cap_header) <= info.size(); guard++) {
      auto* h = reinterpret_cast<const vfio_info_cap_header*>(info.data() + off);
      if (h->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP && off + sizeof(vfio_region_info_cap_sparse_mmap) <= info.size()) {
        auto* s = reinterpret_cast<const vfio_region_info_cap_sparse_mmap*>(h);
        sparse = true;
        const size_t room =
            (info.size() - off - sizeof(vfio_region_info_cap_sparse_mmap)) / sizeof(vfio_region_sparse_mmap_area);
        for (uint32_t i = 0; i < s->nr_areas && i < room; i++)
          if (s->areas[i].size) areas.emplace_back(s->areas[i].offset, s->areas[i].size);
      }
      off = h->next;
    }
  }
  if (!sparse) areas.emplace_back(0, r->size);
  const int prot = ((r->flags & VFIO_REGION_INFO_FLAG_READ) ? PROT_READ : 0) |
                   ((r->flags & VFIO_REGION_INFO_FLAG_WRITE) ? PROT_WRITE : 0);
  for (const auto& a : areas) {
    void* p = ::mmap(nullptr, a.second, prot, MAP_SHARED, handle_.fd.get(), static_cast<off_t>(r->offset + a.first));
    // A refused mmap is not fatal: accesses then go through pread/pwrite on the device fd.
    if (p != MAP_FAILED) bars_[bar].maps.emplace_back(a.first, p, a.second);
  }
}

// ---------------------------------------------------------------- config space

void VfioPciDevice::rw(bool write, uint64_t fdOffset, void* buf, size_t len, const char* what) {
  const ssize_t r = retryEintr([&] {
    return write ? ::pwrite(handle_.fd.get(), buf, len, static_cast<off_t>(fdOffset))
                 : ::pread(handle_.fd.get(), buf, len, static_cast<off_t>(fdOffset));
  });
  if (r < 0) throwErrno(what, owner_);
  if (static_cast<size_t>(r) != len) throwSys(EIO, what, owner_, "short access to a VFIO region");
}

void VfioPciDevice::configRead(uint32_t offset, void* buf, uint32_t len) {
  if (!fitsWithin(offset, len, configSize_))
    throwSys(EINVAL, "pread(VFIO config region)", owner_, "past the end of config space");
  rw(false, configOffset_ + offset, buf, len, "pread(VFIO config region)");
}

void VfioPciDevice::configWrite(uint32_t offset, const void* buf, uint32_t len) {
  if (!fitsWithin(offset, len, configSize_))
    throwSys(EINVAL, "pwrite(VFIO config region)", owner_, "past the end of config space");
  rw(true, configOffset_ + offset, const_cast<void*>(buf), len, "pwrite(VFIO config region)");
}

uint8_t VfioPciDevice::config8(uint32_t offset) {
  uint8_t v = 0;
  configRead(offset, &v, 1);
  return v;
}

uint16_t VfioPciDevice::config16(uint32_t offset) {
  uint8_t b[2] = {};
  configRead(offset, b, 2);
  return static_cast<uint16_t>(b[0] | b[1] << 8);
}

uint32_t VfioPciDevice::config32(uint32_t offset) {
  uint8_t b[4] = {};
  configRead(offset, b, 4);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

void VfioPciDevice::setConfig16(uint32_t offset, uint16_t v) {
  uint8_t b[2] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)};
  configWrite(offset, b, 2);
}

void VfioPciDevice::ConfigWindow::write32(uint64_t off, uint32_t v) {
  uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
                  static_cast<uint8_t>(v >> 24)};
  d_.configWrite(static_cast<uint32_t>(off), b, 4);
}

// ---------------------------------------------------------------- BARs

volatile uint8_t* VfioPciDevice::barPointer(unsigned bar, uint64_t offset, uint64_t len) const {
  if (bar >= kBars) return nullptr;
  for (const Mapping& m : bars_[bar].maps)
    if (offset >= m.offset() && offset - m.offset() <= m.size() && len <= m.size() - (offset - m.offset()))
      return m.get() + (offset - m.offset());
  return nullptr;
}

uint32_t VfioPciDevice::barRead(unsigned bar, uint64_t offset, unsigned width) {
  if (volatile uint8_t* p = barPointer(bar, offset, width)) {
    switch (width) {
      case 1:
        return *p;
      case 2:
        return *reinterpret_cast<volatile uint16_t*>(p);
      default:
        return *reinterpret_cast<volatile uint32_t*>(p);
    }
  }
  if (!barUsable(bar) || offset + width > bars_[bar].size)
    throwSys(EINVAL, "pread(VFIO BAR region)", owner_, "access outside BAR " + std::to_string(bar));
  uint8_t b[4] = {};
  rw(false, bars_[bar].fdOffset + offset, b, width, "pread(VFIO BAR region)");
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

void VfioPciDevice::barWrite(unsigned bar, uint64_t offset, uint32_t value, unsigned width) {
  if (volatile uint8_t* p = barPointer(bar, offset, width)) {
    switch (width) {
      case 1:
        *p = static_cast<uint8_t>(value);
        break;
      case 2:
        *reinterpret_cast<volatile uint16_t*>(p) = static_cast<uint16_t>(value);
        break;
      default:
        *reinterpret_cast<volatile uint32_t*>(p) = value;
        break;
    }
    return;
  }
  if (!barUsable(bar) || offset + width > bars_[bar].size)
    throwSys(EINVAL, "pwrite(VFIO BAR region)", owner_, "access outside BAR " + std::to_string(bar));
  uint8_t b[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8), static_cast<uint8_t>(value >> 16),
                  static_cast<uint8_t>(value >> 24)};
  rw(true, bars_[bar].fdOffset + offset, b, width, "pwrite(VFIO BAR region)");
}

// ---------------------------------------------------------------- MSI-X, reset

void VfioPciDevice::enableMsix(const std::vector<int>& fds) {
  if (fds.empty() || fds.size() > msixCount_)
    throwSys(EINVAL, "ioctl(VFIO_DEVICE_SET_IRQS)", owner_,
             "the function has " + std::to_string(msixCount_) + " MSI-X vectors");
  std::vector<uint8_t> b(sizeof(vfio_irq_set) + fds.size() * sizeof(int32_t));
  auto* s = reinterpret_cast<vfio_irq_set*>(b.data());
  s->argsz = static_cast<uint32_t>(b.size());
  s->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  s->index = VFIO_PCI_MSIX_IRQ_INDEX;
  s->start = 0;
  s->count = static_cast<uint32_t>(fds.size());
  for (size_t i = 0; i < fds.size(); i++) {
    const int32_t fd = fds[i];
    std::memcpy(b.data() + sizeof(vfio_irq_set) + i * sizeof(int32_t), &fd, sizeof fd);
  }
  if (int err = ioctlErrno(handle_.fd.get(), VFIO_DEVICE_SET_IRQS, s))
    throwSys(err, "ioctl(VFIO_DEVICE_SET_IRQS)", owner_,
             err == ENOSPC ? "the host could not allocate " + std::to_string(fds.size()) + " MSI-X vectors"
                           : "enabling MSI-X failed");
  msixEnabled_ = true;
}

namespace {
// VFIO_DEVICE_SET_IRQS with one eventfd for interrupt `start` of `index` (`action`: TRIGGER, or
// UNMASK for INTx); the errno, 0 on success.
int setIrqEventFd(int deviceFd, uint32_t index, uint32_t action, uint32_t start, int fd) noexcept {
  uint8_t b[sizeof(vfio_irq_set) + sizeof(int32_t)] = {};
  auto* s = reinterpret_cast<vfio_irq_set*>(b);
  s->argsz = sizeof b;
  s->flags = VFIO_IRQ_SET_DATA_EVENTFD | action;
  s->index = index;
  s->start = start;
  s->count = 1;
  const int32_t v = fd;
  std::memcpy(b + sizeof(vfio_irq_set), &v, sizeof v);
  return ioctlErrno(deviceFd, VFIO_DEVICE_SET_IRQS, s);
}

// Turns every interrupt of `index` off (no throw).
void disableIrqs(int deviceFd, uint32_t index) noexcept {
  vfio_irq_set s{};
  s.argsz = sizeof s;
  s.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
  s.index = index;
  s.start = 0;
  s.count = 0;
  ioctlErrno(deviceFd, VFIO_DEVICE_SET_IRQS, &s);
}
}  // namespace

void VfioPciDevice::setVector(uint32_t vector, int fd) {
  if (!msixEnabled_) throwSys(EINVAL, "ioctl(VFIO_DEVICE_SET_IRQS)", owner_, "MSI-X is not enabled");
  if (int err = setIrqEventFd(handle_.fd.get(), VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, vector, fd))
    throwSys(err, "ioctl(VFIO_DEVICE_SET_IRQS)", owner_,
             "routing MSI-X vector " + std::to_string(vector) + " to an eventfd failed");
}

void VfioPciDevice::disableMsix() noexcept {
  if (!msixEnabled_) return;
  disableIrqs(handle_.fd.get(), VFIO_PCI_MSIX_IRQ_INDEX);
  msixEnabled_ = false;
}

// ---------------------------------------------------------------- INTx

void VfioPciDevice::enableIntx(int triggerFd, int unmaskFd) {
  static const char* kSys = "ioctl(VFIO_DEVICE_SET_IRQS)";
  if (!hasIntx_) throwSys(EINVAL, kSys, owner_, "the function has neither MSI-X nor an INTx interrupt");
  if (int err = setIrqEventFd(handle_.fd.get(), VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0, triggerFd))
    throwSys(err, kSys, owner_, "routing the INTx interrupt to an eventfd failed");
  intxEnabled_ = true;
  if (int err = setIrqEventFd(handle_.fd.get(), VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, 0, unmaskFd)) {
    disableIntx();
    throwSys(err, kSys, owner_, "an INTx unmask eventfd was refused");
  }
}

void VfioPciDevice::disableIntx() noexcept {
  if (!intxEnabled_) return;
  disableIrqs(handle_.fd.get(), VFIO_PCI_INTX_IRQ_INDEX);
  intxEnabled_ = false;
}

bool VfioPciDevice::setRequestFd(int fd) noexcept {
  return setIrqEventFd(handle_.fd.get(), VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0, fd) == 0;
}

int VfioPciDevice::resetFunction() noexcept {
  if (!canReset_) return EOPNOTSUPP;
  return ioctlErrno(handle_.fd.get(), VFIO_DEVICE_RESET, nullptr);
}

}  // namespace vdpa
