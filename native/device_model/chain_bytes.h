// Byte-level access to a chain's scattered buffers, so device models never assume how a driver split
// them: copies, fills, and the iovec list of a byte range (for preadv/pwritev straight into them).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ring/device_queue.h"

namespace vdpa {

size_t copyFromBuffers(const std::vector<DeviceBuffer>& bufs, uint64_t offset, void* dst, size_t len);
size_t copyToBuffers(const std::vector<DeviceBuffer>& bufs, uint64_t offset, const void* src, size_t len);
size_t fillBuffers(const std::vector<DeviceBuffer>& bufs, uint64_t offset, uint8_t value, size_t len);
// Replaces `out` with the pieces of [offset, offset+len) across the buffers; returns the bytes covered.
size_t buffersToIovecs(const std::vector<DeviceBuffer>& bufs, uint64_t offset, size_t len, std::vector<iovec>& out);

}  // namespace vdpa
