#include "common/checks.h"

#include <sys/resource.h>

#include <algorithm>

#include "common/sys_error.h"

namespace vdpa {

void checkConfigRange(uint64_t offset, uint64_t len, uint64_t size, const std::string& syscall,
                      const std::string& path) {
  if (!fitsWithin(offset, len, size))
    throwSys(EINVAL, syscall, path, "config space is " + std::to_string(size) + " bytes");
}

void checkQueueIndex(uint32_t index, uint32_t count, const std::string& syscall, const std::string& path) {
  if (index >= count)
    throwSys(EINVAL, syscall, path,
             "the device has " + std::to_string(count) + " queues; there is no queue " + std::to_string(index));
}

void checkQueueSize(uint32_t size, uint32_t max, bool packed, const std::string& syscall, const std::string& path) {
  const uint32_t limit = std::min(max, kMaxQueueSize);
  if (!queueSizeValid(size, max, packed))
    throwSys(EINVAL, syscall, path,
             "queue size " + std::to_string(size) +
                 (packed ? " must be between 1 and " : " must be a power of two no larger than ") +
                 std::to_string(limit));
}

std::string memlockLimitText() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_MEMLOCK, &rl) != 0) return "";
  if (rl.rlim_cur == RLIM_INFINITY) return " (currently unlimited)";
  return " (currently " + std::to_string(rl.rlim_cur / 1024) + " KiB)";
}

std::string memlockHint(uint64_t len) {
  return "RLIMIT_MEMLOCK too low" + memlockLimitText() + " to pin " + hex(len) +
         " more bytes: the device pins the memory it maps; raise it (`ulimit -l`, or LimitMEMLOCK= for a systemd "
         "service)";
}

}  // namespace vdpa
