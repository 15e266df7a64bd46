// One PCI function reached through a VFIO device fd: config space (the VFIO config region), BARs
// (mmap'd where VFIO allows, else pread/pwrite on the fd), MSI-X vectors routed to eventfds, and the
// function-level reset. Knows nothing about virtio.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "transport/vfio/vfio_iommu.h"
#include "transport/virtio_pci/register_window.h"

namespace vdpa {

class VfioPciDevice {
 public:
  // Opens `bdf` through `iommu` (which must outlive nothing: the device keeps it alive).
  VfioPciDevice(std::shared_ptr<VfioIommu> iommu, const std::string& bdf, const std::string& owner);
  ~VfioPciDevice();
  VfioPciDevice(const VfioPciDevice&) = delete;
  VfioPciDevice& operator=(const VfioPciDevice&) = delete;

  VfioIommu& iommu() { return *iommu_; }

  // ---- PCI configuration space (little-endian values)
  void configRead(uint32_t offset, void* buf, uint32_t len);
  void configWrite(uint32_t offset, const void* buf, uint32_t len);
  uint8_t config8(uint32_t offset);
  uint16_t config16(uint32_t offset);
  uint32_t config32(uint32_t offset);
  void setConfig16(uint32_t offset, uint16_t v);

  // ---- BARs. Accesses are 1, 2 or 4 bytes wide and naturally aligned.
  bool barUsable(unsigned bar) const { return bar < kBars && bars_[bar].size > 0; }
  uint64_t barSize(unsigned bar) const { return bar < kBars ? bars_[bar].size : 0; }
  // The mapped address of [offset, offset+len) in the BAR, or nullptr when that part is not mmap'd.
  volatile uint8_t* barPointer(unsigned bar, uint64_t offset, uint64_t len) const;
  uint32_t barRead(unsigned bar, uint64_t offset, unsigned width);
  void barWrite(unsigned bar, uint64_t offset, uint32_t value, unsigned width);

  // ---- MSI-X
  uint32_t msixCount() const { return msixCount_; }
  // Enables `count` vectors; vector i is routed to fds[i] (-1: allocated but not signalled).
  void enableMsix(const std::vector<int>& fds);
  // Routes one enabled vector to `fd` (-1: stops signalling it).
  void setVector(uint32_t vector, int fd);
  // Disables MSI-X (no throw).
  void disableMsix() noexcept;

  // ---- INTx, for a function without MSI-X: one level-triggered line that vfio-pci masks when it fires
  bool hasIntx() const { return hasIntx_; }
  // Routes the line to `triggerFd`; a write to `unmaskFd` unmasks it again (after the cause was cleared).
  void enableIntx(int triggerFd, int unmaskFd);
  // Disables INTx signalling (no throw).
  void disableIntx() noexcept;

  // Routes the release request (VFIO_PCI_REQ_IRQ_INDEX) to `fd`; false when the kernel has none.
  bool setRequestFd(int fd) noexcept;

  // VFIO_DEVICE_RESET; returns 0, the errno, or EOPNOTSUPP when the function has no reset method.
  int resetFunction() noexcept;

  // ---- The same, as register windows for the virtio-pci logic
  RegisterWindow& configWindow() { return configWindow_; }
  // nullptr when the function has no usable BAR `bar`.
  RegisterWindow* barWindow(unsigned bar) { return barUsable(bar) ? &barWindows_[bar] : nullptr; }

 private:
  static constexpr unsigned kBars = 6;

  // Config space through the VFIO config region.
  class ConfigWindow final : public RegisterWindow {
   public:
    explicit ConfigWindow(VfioPciDevice& d) : d_(d) {}
    uint64_t size() const override { return d_.configSize_; }
    uint8_t read8(uint64_t off) override { return d_.config8(static_cast<uint32_t>(off)); }
    uint16_t read16(uint64_t off) override { return d_.config16(static_cast<uint32_t>(off)); }
    uint32_t read32(uint64_t off) override { return d_.config32(static_cast<uint32_t>(off)); }
    void write8(uint64_t off, uint8_t v) override { d_.configWrite(static_cast<uint32_t>(off), &v, 1); }
    void write16(uint64_t off, uint16_t v) override { d_.setConfig16(static_cast<uint32_t>(off), v); }
    void write32(uint64_t off, uint32_t v) override;
    volatile uint8_t* mapped(uint64_t, uint64_t) const override { return nullptr; }

   private:
    VfioPciDevice& d_;
  };
  // One BAR: its mmap'd parts directly, the rest through the fd.
  class BarWindow final : public RegisterWindow {
   public:
    uint64_t size() const override { return d_->barSize(bar_); }
    uint8_t read8(uint64_t off) override { return static_cast<uint8_t>(d_->barRead(bar_, off, 1)); }
    uint16_t read16(uint64_t off) override { return static_cast<uint16_t>(d_->barRead(bar_, off, 2)); }
    uint32_t read32(uint64_t off) override { return d_->barRead(bar_, off, 4); }
    void write8(uint64_t off, uint8_t v) override { d_->barWrite(bar_, off, v, 1); }
    void write16(uint64_t off, uint16_t v) override { d_->barWrite(bar_, off, v, 2); }
    void write32(uint64_t off, uint32_t v) override { d_->barWrite(bar_, off, v, 4); }
    volatile uint8_t* mapped(uint64_t off, uint64_t len) const override { return d_->barPointer(bar_, off, len); }
    void bind(VfioPciDevice* d, unsigned bar) {
      d_ = d;
      bar_ = bar;
    }

   private:
    VfioPciDevice* d_ = nullptr;
    unsigned bar_ = 0;
  };

  // One mmap of (part of) a BAR; munmap'd on destruction.
  class Mapping {
   public:
    Mapping(uint64_t offset, void* p, size_t len) : offset_(offset), p_(p), len_(len) {}
    Mapping(Mapping&& o) noexcept;
    Mapping& operator=(Mapping&& o) noexcept;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping();
    uint64_t offset() const { return offset_; }
    size_t size() const { return len_; }
    uint8_t* get() const { return static_cast<uint8_t*>(p_); }

   private:
    uint64_t offset_;  // within the BAR
    void* p_;
    size_t len_;
  };
  struct Bar {
    uint64_t size = 0;
    uint64_t fdOffset = 0;  // where the region lives in the device fd
    uint32_t flags = 0;
    std::vector<Mapping> maps;
  };

  // VFIO_DEVICE_GET_REGION_INFO with capabilities; returns false when the region does not exist.
  bool regionInfo(uint32_t index, std::vector<uint8_t>* buf);
  void mapBar(unsigned bar, const std::vector<uint8_t>& info);
  void rw(bool write, uint64_t fdOffset, void* buf, size_t len, const char* what);

  const std::string owner_;
  std::shared_ptr<VfioIommu> iommu_;  // declared first: destroyed last
  VfioIommu::DeviceHandle handle_;
  Bar bars_[kBars];
  uint64_t configOffset_ = 0;
  uint64_t configSize_ = 0;
  uint32_t msixCount_ = 0;
  bool msixEnabled_ = false;
  bool hasIntx_ = false;
  bool intxEnabled_ = false;
  bool canReset_ = false;
  ConfigWindow configWindow_{*this};
  BarWindow barWindows_[kBars];
};

}  // namespace vdpa
