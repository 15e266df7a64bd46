#include "device_model/chain_bytes.h"

#include <algorithm>
#include <cstring>

namespace vdpa {

namespace {
// Visits [offset, offset+len) across the buffers; fn(buffer pointer, position in the range, bytes).
template <typename Fn>
size_t forRange(const std::vector<DeviceBuffer>& bufs, uint64_t offset, size_t len, Fn fn) {
  size_t done = 0;
  for (const DeviceBuffer& b : bufs) {
    if (done == len) break;
    if (offset >= b.len) {
      offset -= b.len;
      continue;
    }
    const size_t n = std::min<size_t>(b.len - offset, len - done);
    fn(b.data + offset, done, n);
    done += n;
    offset = 0;
  }
  return done;
}
}  // namespace

size_t copyFromBuffers(const std::vector<DeviceBuffer>& bufs, uint64_t offset, void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  return forRange(bufs, offset, len, [out](uint8_t* p, size_t at, size_t n) { std::memcpy(out + at, p, n); });
}

size_t copyToBuffers(const std::vector<DeviceBuffer>& bufs, uint64_t offset, const void* src, size_t len) {
  auto* in = static_cast<const uint8_t*>(src);
  return forRange(bufs, offset, len, [in](uint8_t* p, size_t at, size_t n) { std::memcpy(p, in + at, n); });
}

size_t fillBuffers(const std::vector<DeviceBuffer>& bufs, uint64_t offset, uint8_t value, size_t len) {
  return forRange(bufs, offset, len, [value](uint8_t* p, size_t, size_t n) { std::memset(p, value, n); });
}

size_t buffersToIovecs(const std::vector<DeviceBuffer>& bufs, uint64_t offset, size_t len, std::vector<iovec>& out) {
  out.clear();
  return forRange(bufs, offset, len, [&out](uint8_t* p, size_t, size_t n) { out.push_back(iovec{p, n}); });
}

}  // namespace vdpa
