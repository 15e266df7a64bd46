#include "management/netlink_socket.h"

#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <string>

#include "common/arg_error.h"
#include "common/sys_error.h"
#include "common/unique_fd.h"

namespace vdpa {

namespace {

// No management answer comes near this; a runaway dump fails instead of eating memory.
constexpr size_t kMaxReplyBytes = 16u << 20;

UniqueFd openSocket() {
  UniqueFd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC));
  if (!sock) throwErrno("socket(AF_NETLINK)", "", "the kernel has no generic netlink");
  const int one = 1;
  // Extended acks carry the kernel's explanation (e.g. "device not found"); capped acks do not echo
  // the request back. Both are best effort: an old kernel without them still answers.
  ::setsockopt(sock.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  ::setsockopt(sock.get(), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) < 0) throwErrno("bind(AF_NETLINK)");
  return sock;
}

uint32_t portOf(int sock) {
  sockaddr_nl local{};
  socklen_t len = sizeof local;
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&local), &len) < 0) throwErrno("getsockname(AF_NETLINK)");
  return local.nl_pid;
}

// Waits until `sock` is readable or the deadline passes.
void waitReadable(int sock, std::chrono::steady_clock::time_point deadline, int timeoutMs) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0)
      throw SysError(
          ETIMEDOUT, "recv(netlink)", "",
          "ETIMEDOUT: the kernel did not answer the netlink request within " + std::to_string(timeoutMs) + " ms");
    pollfd p{sock, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r > 0) return;
    if (r < 0 && errno != EINTR) throwErrno("poll(netlink)");
  }
}

// One datagram, whatever its size (peeked first so that nothing is truncated).
std::vector<uint8_t> receiveDatagram(int sock) {
  for (;;) {
    uint8_t probe;
    const ssize_t size = ::recv(sock, &probe, sizeof probe, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    if (size < 0) {
      if (errno == EINTR) continue;
      throwErrno("recv(netlink)");
    }
    std::vector<uint8_t> buf(static_cast<size_t>(size));
    const ssize_t n = ::recv(sock, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      throwErrno("recv(netlink)");
    }
    buf.resize(static_cast<size_t>(n));
    return buf;
  }
}

}  // namespace

std::vector<NetlinkMessage> netlinkTransact(const std::vector<uint8_t>& request, int timeoutMs) {
  if (request.size() < NLMSG_HDRLEN) throwRangeArg("netlink request shorter than its header");
  nlmsghdr head;
  std::memcpy(&head, request.data(), sizeof head);
  if (head.nlmsg_len != request.size()) throwRangeArg("netlink request length does not match its header");
  // Without an ack a plain request's answer has no end marker: it would only end by timing out.
  if (!(head.nlmsg_flags & (NLM_F_ACK | NLM_F_DUMP))) throwRangeArg("netlink request must be a dump or ask for an ack");
  if (timeoutMs <= 0) throwRangeArg("netlink timeout must be positive");

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  UniqueFd sock = openSocket();
  const uint32_t port = portOf(sock.get());
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = ::sendto(sock.get(), request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) throwErrno("sendto(netlink)");

  std::vector<NetlinkMessage> out;
  size_t total = 0;
  for (;;) {
    waitReadable(sock.get(), deadline, timeoutMs);
    const std::vector<uint8_t> dgram = receiveDatagram(sock.get());
    size_t at = 0;
    while (at + NLMSG_HDRLEN <= dgram.size()) {
      nlmsghdr h;
      std::memcpy(&h, dgram.data() + at, sizeof h);
      if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > dgram.size() - at)
        throw SysError(EPROTO, "recv(netlink)", "", "EPROTO: malformed netlink message from the kernel");
      if (h.nlmsg_seq == head.nlmsg_seq && h.nlmsg_pid == port) {
        total += h.nlmsg_len;
        if (total > kMaxReplyBytes)
          throw SysError(EMSGSIZE, "recv(netlink)", "", "EMSGSIZE: netlink answer larger than 16 MiB");
        out.emplace_back(dgram.begin() + at, dgram.begin() + at + h.nlmsg_len);
        if (h.nlmsg_type == NLMSG_DONE || h.nlmsg_type == NLMSG_ERROR) return out;
      }
      at += NLMSG_ALIGN(h.nlmsg_len);
    }
  }
}

}  // namespace vdpa
