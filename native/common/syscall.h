// System-call helpers every transport shares: EINTR retries and sleeping.
#pragma once

#include <sys/ioctl.h>

#include <cerrno>
#include <chrono>

namespace vdpa {

// Runs `call` again while it fails with EINTR; returns its last result (errno says why when < 0).
template <typename Call>
auto retryEintr(Call call) -> decltype(call()) {
  decltype(call()) r;
  do {
    r = call();
  } while (r < 0 && errno == EINTR);
  return r;
}

// ioctl retried on EINTR: 0 on success, else the errno.
inline int ioctlErrno(int fd, unsigned long request, void* arg) {
  return retryEintr([&] { return ::ioctl(fd, request, arg); }) < 0 ? errno : 0;
}

// ioctl with an integer argument, retried on EINTR: the ioctl's own result (VFIO returns values such
// as an API version or a new fd this way), with errno set when it is negative.
inline int ioctlValue(int fd, unsigned long request, unsigned long arg) {
  return retryEintr([&] { return ::ioctl(fd, request, arg); });
}

// Sleeps for `d`, resuming after signals, without throwing.
void sleepFor(std::chrono::nanoseconds d) noexcept;

}  // namespace vdpa
