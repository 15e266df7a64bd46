// Checks every transport and the core make the same way, with the same messages.
#pragma once

#include <cstdint>
#include <string>

namespace vdpa {

// The largest queue virtio 1.x allows, for both ring formats (packed rings keep 15-bit offsets).
constexpr uint32_t kMaxQueueSize = 32768;

// True when [offset, offset + len) lies inside [0, size) (overflow-safe).
constexpr bool fitsWithin(uint64_t offset, uint64_t len, uint64_t size) {
  return offset <= size && len <= size - offset;
}

// Throws EINVAL "config space is N bytes" (as `syscall` on `path`) unless [offset, offset + len) fits.
void checkConfigRange(uint64_t offset, uint64_t len, uint64_t size, const std::string& syscall,
                      const std::string& path);

// Throws EINVAL "the device has N queues; there is no queue I" unless index < count.
void checkQueueIndex(uint32_t index, uint32_t count, const std::string& syscall, const std::string& path);

// Whether `size` suits a queue whose device maximum is `max`: split rings need a power of two;
// packed rings take any size from 1 (virtio 1.2, 2.7). Both stop at kMaxQueueSize.
constexpr bool queueSizeValid(uint32_t size, uint32_t max, bool packed) {
  return size != 0 && size <= (max < kMaxQueueSize ? max : kMaxQueueSize) && (packed || (size & (size - 1)) == 0);
}
// Throws EINVAL, saying the rule, unless queueSizeValid().
void checkQueueSize(uint32_t size, uint32_t max, bool packed, const std::string& syscall, const std::string& path);

// " (currently N KiB)" or " (currently unlimited)": the RLIMIT_MEMLOCK now in force ("" when unknown).
std::string memlockLimitText();
// The hint for a DMA mapping refused for want of lockable memory (`len` more bytes to pin); callers
// add what is particular to their kernel interface.
std::string memlockHint(uint64_t len);

}  // namespace vdpa
