#include "common/syscall.h"

#include <time.h>

namespace vdpa {

void sleepFor(std::chrono::nanoseconds d) noexcept {
  if (d.count() <= 0) return;
  timespec ts{static_cast<time_t>(d.count() / 1000000000), static_cast<long>(d.count() % 1000000000)};
  while (::nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

}  // namespace vdpa
