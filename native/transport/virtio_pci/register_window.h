// A window of device registers: one BAR of a PCI function, or its configuration space. The virtio-pci
// logic reads and writes through it and never learns how the bytes travel (VFIO: an mmap'd BAR or
// pread/pwrite on the device fd; the tests: a fake register file). Values are little-endian;
// accesses are naturally aligned.
#pragma once

#include <cstdint>

namespace vdpa {

class RegisterWindow {
 public:
  virtual ~RegisterWindow() = default;

  // Bytes the window spans; accesses beyond it are refused by the implementation.
  virtual uint64_t size() const = 0;
  virtual uint8_t read8(uint64_t offset) = 0;
  virtual uint16_t read16(uint64_t offset) = 0;
  virtual uint32_t read32(uint64_t offset) = 0;
  virtual void write8(uint64_t offset, uint8_t value) = 0;
  virtual void write16(uint64_t offset, uint16_t value) = 0;
  virtual void write32(uint64_t offset, uint32_t value) = 0;
  // Where [offset, offset + len) is mapped into this process, for doorbell writes without a system
  // call; nullptr when it is not.
  virtual volatile uint8_t* mapped(uint64_t offset, uint64_t len) const = 0;

  // 64-bit fields go as two 32-bit accesses, low half first (virtio 1.2 §4.1.3.1).
  uint64_t read64(uint64_t offset) { return read32(offset) | uint64_t{read32(offset + 4)} << 32; }
  void write64(uint64_t offset, uint64_t value) {
    write32(offset, static_cast<uint32_t>(value));
    write32(offset + 4, static_cast<uint32_t>(value >> 32));
  }
};

}  // namespace vdpa
