#include "vduse/tap_port.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/ioctl.h>

#include <cstring>
#include <vector>

#include "common/sys_error.h"
#include "common/syscall.h"

namespace vdpa {

namespace {

// Longer than any frame a TAP hands over (64 KiB): a frame too big for the NIC is dropped whole by
// receive(), never cut short.
constexpr size_t kReadBytes = size_t{64} << 10 | 256;

std::string tunHint(int err) {
  switch (err) {
    case ENOENT:
    case ENODEV:
      return "the tun module is missing: modprobe tun";
    case EPERM:
    case EACCES:
      return "creating a TAP interface needs CAP_NET_ADMIN: run as root";
    case EBUSY:
      return "a TAP interface of that name is already open (or the name belongs to another kind of interface)";
    case EINVAL:
      return "the name is not a valid interface name, or belongs to an interface that is not a TAP";
    default:
      return "";
  }
}

}  // namespace

TapPort::TapPort(const std::string& name, std::weak_ptr<VduseNet> net, const std::string& tunPath)
    : net_(std::move(net)) {
  if (name.empty() || name.size() > kMaxNameBytes) throwSys(EINVAL, "ioctl(TUNSETIFF)", name, tunHint(EINVAL));
  const int fd = retryEintr([&] { return ::open(tunPath.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC); });
  if (fd < 0) throwErrno("open", tunPath, tunHint(errno));
  fd_.reset(fd);
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(fd_.get(), TUNSETIFF, &ifr) < 0) throwErrno("ioctl(TUNSETIFF)", name, tunHint(errno));
  name_.assign(ifr.ifr_name, strnlen(ifr.ifr_name, sizeof ifr.ifr_name));
  stop_ = makeEventFd();
  thread_ = std::thread([this] { run(); });
}

TapPort::~TapPort() { stop(); }

void TapPort::stop() {
  if (!thread_.joinable()) return;
  signalEventFd(stop_.get());
  thread_.join();
}

bool TapPort::deliver(NetFrame frame) {
  fillChecksum(frame);
  const ssize_t n = retryEintr([&] { return ::write(fd_.get(), frame.bytes.data(), frame.bytes.size()); });
  // EAGAIN: the interface's queue is full; EIO: it is down. Either way the frame is gone, as on a wire.
  return n == static_cast<ssize_t>(frame.bytes.size());
}

// Reads until stopped; a frame the NIC cannot take is counted (rxDropped) by receive().
void TapPort::run() {
  std::vector<uint8_t> buf(kReadBytes);
  pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents & (POLLERR | POLLNVAL)) return;
    for (;;) {
      const ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EAGAIN: drained (an interface that is down reads EIO: wait for POLLIN again)
      if (auto net = net_.lock()) net->receive(buf.data(), static_cast<size_t>(n));
    }
  }
}

}  // namespace vdpa
