// Owning file descriptor: closed exactly once, movable, never copied.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "common/sys_error.h"
#include "common/syscall.h"

namespace vdpa {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A non-blocking, close-on-exec eventfd (kick and call notifications).
inline UniqueFd makeEventFd() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throwErrno("eventfd");
  return UniqueFd(fd);
}

// Adds one to an eventfd counter; EAGAIN (counter saturated) still means "signalled".
inline void signalEventFd(int fd) {
  uint64_t one = 1;
  retryEintr([&] { return ::write(fd, &one, sizeof one); });
}

// Reads and clears an eventfd counter; returns the count (0 when nothing was pending).
inline uint64_t drainEventFd(int fd) {
  uint64_t v = 0;
  const ssize_t r = retryEintr([&] { return ::read(fd, &v, sizeof v); });
  return r == sizeof v ? v : 0;
}

}  // namespace vdpa
