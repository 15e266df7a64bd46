#include "transport/vhost_vdpa/vdpa_netlink.h"

#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/vdpa.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/unique_fd.h"

namespace vdpa {

namespace {

// One generic-netlink request under construction: nlmsghdr + genlmsghdr + attributes.
class GenlRequest {
 public:
  GenlRequest(uint16_t family, uint8_t cmd) : buf_(NLMSG_HDRLEN + GENL_HDRLEN, 0) {
    auto* nh = reinterpret_cast<nlmsghdr*>(buf_.data());
    nh->nlmsg_type = family;
    nh->nlmsg_flags = NLM_F_REQUEST;
    nh->nlmsg_seq = 1;
    auto* gh = reinterpret_cast<genlmsghdr*>(buf_.data() + NLMSG_HDRLEN);
    gh->cmd = cmd;
    gh->version = 1;
  }
  void addString(uint16_t type, const std::string& s) {
    const size_t payload = s.size() + 1;
    const size_t at = buf_.size();
    buf_.resize(at + NLA_ALIGN(NLA_HDRLEN + payload), 0);
    auto* a = reinterpret_cast<nlattr*>(buf_.data() + at);
    a->nla_type = type;
    a->nla_len = static_cast<uint16_t>(NLA_HDRLEN + payload);
    std::memcpy(buf_.data() + at + NLA_HDRLEN, s.c_str(), payload);
  }
  // Sends the request and calls `onAttr(type, data, len)` for each top-level attribute of the reply.
  template <typename F>
  bool transact(int sock, F onAttr) {
    reinterpret_cast<nlmsghdr*>(buf_.data())->nlmsg_len = static_cast<uint32_t>(buf_.size());
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(sock, buf_.data(), buf_.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
      return false;
    std::vector<uint8_t> reply(16384);
    const ssize_t n = ::recv(sock, reply.data(), reply.size(), 0);
    if (n < static_cast<ssize_t>(NLMSG_HDRLEN)) return false;
    const auto* nh = reinterpret_cast<const nlmsghdr*>(reply.data());
    if (!NLMSG_OK(nh, static_cast<uint32_t>(n)) || nh->nlmsg_type == NLMSG_ERROR) return false;
    if (nh->nlmsg_len < NLMSG_HDRLEN + GENL_HDRLEN) return false;
    const uint8_t* p = reply.data() + NLMSG_HDRLEN + GENL_HDRLEN;
    const uint8_t* end = reply.data() + nh->nlmsg_len;
    while (p + NLA_HDRLEN <= end) {
      const auto* a = reinterpret_cast<const nlattr*>(p);
      if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end) break;
      onAttr(static_cast<uint16_t>(a->nla_type & NLA_TYPE_MASK), p + NLA_HDRLEN,
             static_cast<size_t>(a->nla_len - NLA_HDRLEN));
      p += NLA_ALIGN(a->nla_len);
    }
    return true;
  }

 private:
  std::vector<uint8_t> buf_;
};

}  // namespace

bool vdpaDeviceName(const std::string& vhostPath, std::string* name) {
  struct stat st {};
  if (::stat(vhostPath.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) return false;
  const std::string link =
      "/sys/dev/char/" + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) + "/device";
  char resolved[PATH_MAX];
  if (!::realpath(link.c_str(), resolved)) return false;
  const char* slash = std::strrchr(resolved, '/');
  *name = slash ? slash + 1 : resolved;
  return !name->empty();
}

bool vdpaDeviceAttrs(const std::string& name, VdpaDeviceAttrs* out) {
  UniqueFd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC));
  if (!sock) return false;
  timeval tv{1, 0};  // a kernel answer never takes this long; do not hang device opening on it
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  uint16_t family = 0;
  GenlRequest resolve(GENL_ID_CTRL, CTRL_CMD_GETFAMILY);
  resolve.addString(CTRL_ATTR_FAMILY_NAME, VDPA_GENL_NAME);
  if (!resolve.transact(sock.get(), [&](uint16_t type, const uint8_t* data, size_t len) {
        if (type == CTRL_ATTR_FAMILY_ID && len >= 2) std::memcpy(&family, data, 2);
      }))
    return false;
  if (family == 0) return false;

  bool found = false;
  auto str = [](const uint8_t* data, size_t len) {
    return std::string(reinterpret_cast<const char*>(data), strnlen(reinterpret_cast<const char*>(data), len));
  };
  auto u32 = [](const uint8_t* data, size_t len) {
    uint32_t v = 0;
    std::memcpy(&v, data, len >= 4 ? 4 : len);
    return v;
  };
  GenlRequest get(family, VDPA_CMD_DEV_GET);
  get.addString(VDPA_ATTR_DEV_NAME, name);
  if (!get.transact(sock.get(), [&](uint16_t type, const uint8_t* data, size_t len) {
        switch (type) {
          case VDPA_ATTR_DEV_ID:
            out->deviceId = u32(data, len);
            found = true;
            break;
          case VDPA_ATTR_DEV_VENDOR_ID:
            out->vendorId = u32(data, len);
            break;
          case VDPA_ATTR_DEV_MAX_VQS:
            out->maxVqs = u32(data, len);
            break;
          case VDPA_ATTR_DEV_MAX_VQ_SIZE:
            out->maxVqSize = u32(data, len < 2 ? len : 2);
            break;
          case VDPA_ATTR_MGMTDEV_BUS_NAME:
            out->mgmtBus = str(data, len);
            break;
          case VDPA_ATTR_MGMTDEV_DEV_NAME:
            out->mgmtDev = str(data, len);
            break;
          default:
            break;
        }
      }))
    return false;
  return found;
}

}  // namespace vdpa
