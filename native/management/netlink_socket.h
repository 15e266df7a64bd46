// One netlink request and its complete answer, for the vdpa management API. Only the framing lives
// here (where one reply ends); building requests and decoding attributes is done by lib/netlink.ts,
// where it is unit-tested against bytes recorded from a real kernel.
#pragma once

#include <cstdint>
#include <vector>

namespace vdpa {

using NetlinkMessage = std::vector<uint8_t>;

// Opens a NETLINK_GENERIC socket (extended acks on), sends `request` (one nlmsghdr-framed message that
// is a dump or asks for an ack) and returns every message the kernel answers it with, in order, up to
// and including the NLMSG_DONE or NLMSG_ERROR that ends the answer. Messages for other sequence
// numbers or ports are dropped. Waits at most `timeoutMs` in total for the answer; throws SysError
// (ETIMEDOUT when the kernel stays silent, the socket call's errno otherwise) and ArgError for a
// malformed request. The kernel carries out a generic netlink request inside sendto(): one it blocks on
// itself (e.g. a VDUSE daemon that does not answer, up to VDUSE's own message timeout) holds the calling
// (threadpool) thread until the kernel returns; the timeout bounds only the wait after that.
std::vector<NetlinkMessage> netlinkTransact(const std::vector<uint8_t>& request, int timeoutMs);

}  // namespace vdpa
