#include "common/sys_error.h"

#include <cstdio>
#include <cstring>

namespace vdpa {

SysError makeSysError(int err, const std::string& syscall, const std::string& path, const std::string& hint) {
  std::string msg = std::string(errnoName(err)) + ": " + std::strerror(err) + ", " + syscall;
  if (!path.empty()) msg += " '" + path + "'";
  return SysError(err, syscall, path, msg, hint);
}

void throwSys(int err, const std::string& syscall, const std::string& path, const std::string& hint) {
  throw makeSysError(err, syscall, path, hint);
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

const char* errnoName(int err) {
  switch (err) {
#define VDPA_ERRNO(e) \
  case e:             \
    return #e;
    VDPA_ERRNO(EPERM)
    VDPA_ERRNO(ENOENT)
    VDPA_ERRNO(ESRCH)
    VDPA_ERRNO(EINTR)
    VDPA_ERRNO(EIO)
    VDPA_ERRNO(ENXIO)
    VDPA_ERRNO(E2BIG)
    VDPA_ERRNO(EBADF)
    VDPA_ERRNO(EAGAIN)
    VDPA_ERRNO(ENOMEM)
    VDPA_ERRNO(EACCES)
    VDPA_ERRNO(EFAULT)
    VDPA_ERRNO(EBUSY)
    VDPA_ERRNO(EEXIST)
    VDPA_ERRNO(ENODEV)
    VDPA_ERRNO(ENOTDIR)
    VDPA_ERRNO(EINVAL)
    VDPA_ERRNO(ENFILE)
    VDPA_ERRNO(EMFILE)
    VDPA_ERRNO(ENOTTY)
    VDPA_ERRNO(ENOSPC)
    VDPA_ERRNO(ERANGE)
    VDPA_ERRNO(ENOSYS)
    VDPA_ERRNO(ENODATA)
    VDPA_ERRNO(ETIMEDOUT)
    VDPA_ERRNO(EPROTO)
    VDPA_ERRNO(EOVERFLOW)
    VDPA_ERRNO(EOPNOTSUPP)
    VDPA_ERRNO(ECANCELED)
    VDPA_ERRNO(ESHUTDOWN)
    VDPA_ERRNO(ECONNRESET)
    VDPA_ERRNO(EMSGSIZE)
    VDPA_ERRNO(EDQUOT)
#undef VDPA_ERRNO
    default:
      return "EUNKNOWN";
  }
}

}  // namespace vdpa
