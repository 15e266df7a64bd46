// VFIO's *_GET_INFO ioctls answer with a struct followed by a capability chain that may not fit the
// buffer offered; the kernel then says in argsz how much it needs.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/syscall.h"

namespace vdpa {

// Runs `request` with an Info struct in `buf`, growing `buf` to the argsz the kernel asks for (up to
// three tries). `prepare(info)` fills the request's fields other than argsz. Returns 0 or the errno.
template <typename Info, typename Prepare>
int vfioGetInfo(int fd, unsigned long request, std::vector<uint8_t>* buf, Prepare prepare) {
  buf->assign(sizeof(Info), 0);
  for (int attempt = 0; attempt < 3; attempt++) {
    auto* info = reinterpret_cast<Info*>(buf->data());
    const uint32_t size = static_cast<uint32_t>(buf->size());
    std::memset(buf->data(), 0, size);
    info->argsz = size;
    prepare(info);
    if (int err = ioctlErrno(fd, request, info)) return err;
    if (info->argsz <= size) return 0;
    buf->assign(info->argsz, 0);
  }
  return 0;
}

}  // namespace vdpa
