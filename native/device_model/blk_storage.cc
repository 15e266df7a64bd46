#include "device_model/blk_storage.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "common/sys_error.h"
#include "common/syscall.h"

namespace vdpa {

// ---------------------------------------------------------------- RAM

RamStorage::RamStorage(uint64_t size, const std::string& what)
    : what_(what), size_(size), pageSize_(static_cast<uint64_t>(::sysconf(_SC_PAGESIZE))) {
  void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throwErrno("mmap", what,
               "capacity needs more address space than this process can map (the disk is sparse: only written data "
               "costs memory)");
  disk_ = static_cast<uint8_t*>(p);
}

RamStorage::~RamStorage() { ::munmap(disk_, size_); }

void RamStorage::resize(uint64_t bytes) {
  if (bytes == size_) return;
  void* p = ::mremap(disk_, size_, bytes, MREMAP_MAYMOVE);
  if (p == MAP_FAILED)
    throwErrno("mremap", what_, "the new capacity needs more address space than this process can map");
  disk_ = static_cast<uint8_t*>(p);
  size_ = bytes;
}

int RamStorage::read(uint64_t offset, const std::vector<iovec>& iov) {
  for (const iovec& v : iov) {
    std::memcpy(v.iov_base, disk_ + offset, v.iov_len);
    offset += v.iov_len;
  }
  return 0;
}

int RamStorage::write(uint64_t offset, const std::vector<iovec>& iov) {
  for (const iovec& v : iov) {
    std::memcpy(disk_ + offset, v.iov_base, v.iov_len);
    offset += v.iov_len;
  }
  return 0;
}

int RamStorage::zero(uint64_t offset, uint64_t len, bool) {
  // Whole pages go back to the kernel (they read as zeroes again and cost nothing); only the
  // partial pages at either end are written.
  const uint64_t page = pageSize_;
  const uint64_t first = (offset + page - 1) / page * page;
  const uint64_t last = (offset + len) / page * page;
  if (first >= last || ::madvise(disk_ + first, last - first, MADV_DONTNEED) != 0) {
    std::memset(disk_ + offset, 0, len);
    return 0;
  }
  std::memset(disk_ + offset, 0, first - offset);
  std::memset(disk_ + last, 0, offset + len - last);
  return 0;
}

// ---------------------------------------------------------------- file

namespace {

// preadv/pwritev until the whole list moved (short transfers continue where they stopped); a read
// past the end of the file (it shrank under us) reads zeroes.
template <typename Io>
int transferAll(uint64_t offset, std::vector<iovec> iov, bool reading, Io io) {
  size_t first = 0;
  while (first < iov.size()) {
    const int n = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    const ssize_t r = retryEintr([&] { return io(iov.data() + first, n, static_cast<off_t>(offset)); });
    if (r < 0) return errno;
    if (r == 0) {
      if (!reading) return EIO;
      for (size_t i = first; i < iov.size(); i++) std::memset(iov[i].iov_base, 0, iov[i].iov_len);
      return 0;
    }
    offset += static_cast<uint64_t>(r);
    size_t left = static_cast<size_t>(r);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left > 0) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return 0;
}

}  // namespace

FileStorage::FileStorage(const std::string& path, bool readOnly) : path_(path), readOnly_(readOnly) {
  fd_ = UniqueFd(retryEintr([&] { return ::open(path.c_str(), (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC); }));
  if (!fd_) throwErrno("open", path);
  struct stat st {};
  if (::fstat(fd_.get(), &st) < 0) throwErrno("fstat", path);
  uint64_t bytes = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode) && ::ioctl(fd_.get(), BLKGETSIZE64, &bytes) < 0) throwErrno("ioctl(BLKGETSIZE64)", path);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    throwSys(EINVAL, "open", path, "a blk backend must be a regular file or a block device");
  size_ = bytes / 512 * 512;
  if (size_ == 0u)
    throwSys(EINVAL, "open", path, "the file is smaller than one 512-byte sector (truncate -s SIZE makes it bigger)");
}

void FileStorage::resize(uint64_t bytes) {
  struct stat st {};
  if (::fstat(fd_.get(), &st) < 0) throwErrno("fstat", path_);
  uint64_t have = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode) && ::ioctl(fd_.get(), BLKGETSIZE64, &have) < 0) throwErrno("ioctl(BLKGETSIZE64)", path_);
  if (have < bytes) {
    const std::string need = std::to_string(bytes) + " bytes, it has " + std::to_string(have);
    if (S_ISBLK(st.st_mode))
      throwSys(EINVAL, "resize", path_, "the block device is too small: the capacity needs " + need);
    if (readOnly_)
      throwSys(EROFS, "ftruncate", path_, "a read-only disk's file is not grown: the capacity needs " + need);
    if (retryEintr([&] { return ::ftruncate(fd_.get(), static_cast<off_t>(bytes)); }) < 0)
      throwErrno("ftruncate", path_);
  }
  size_.store(bytes, std::memory_order_release);
}

int FileStorage::read(uint64_t offset, const std::vector<iovec>& iov) {
  const int fd = fd_.get();
  return transferAll(offset, iov, true, [fd](const iovec* v, int n, off_t at) { return ::preadv(fd, v, n, at); });
}

int FileStorage::write(uint64_t offset, const std::vector<iovec>& iov) {
  const int fd = fd_.get();
  return transferAll(offset, iov, false, [fd](const iovec* v, int n, off_t at) { return ::pwritev(fd, v, n, at); });
}

int FileStorage::flush() {
  return retryEintr([&] { return ::fdatasync(fd_.get()); }) < 0 ? errno : 0;
}

int FileStorage::zero(uint64_t offset, uint64_t len, bool unmap) {
  auto falloc = [&](int mode) {
    return retryEintr([&] {
             return ::fallocate(fd_.get(), mode | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                                static_cast<off_t>(len));
           }) == 0;
  };
  if (unmap && falloc(FALLOC_FL_PUNCH_HOLE)) return 0;
  if (falloc(FALLOC_FL_ZERO_RANGE)) return 0;
  if (!unmap && falloc(FALLOC_FL_PUNCH_HOLE)) return 0;
  // Neither is supported here (e.g. a block device): write the zeroes.
  static const std::vector<uint8_t> zeroes(1u << 16, 0);
  while (len > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, zeroes.size()));
    const int err = write(offset, {iovec{const_cast<uint8_t*>(zeroes.data()), n}});
    if (err) return err;
    offset += n;
    len -= n;
  }
  return 0;
}

}  // namespace vdpa
