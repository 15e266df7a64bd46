// Where a virtio-blk device keeps its blocks: RAM (a sparse anonymous mapping) or a file. The request
// executor (blk_executor.h) checks every range against size() before it calls a backend, so backends
// only move bytes. Calls come from one device thread at a time, except where a backend allows more.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace vdpa {

class BlkStorage {
 public:
  virtual ~BlkStorage() = default;
  virtual uint64_t size() const = 0;
  // Each returns 0 or an errno (the executor answers the request with IOERR).
  virtual int read(uint64_t offset, const std::vector<iovec>& iov) = 0;
  virtual int write(uint64_t offset, const std::vector<iovec>& iov) = 0;
  virtual int flush() = 0;
  // The range reads back as zeroes afterwards; `unmap`: its space may be given back (discard).
  virtual int zero(uint64_t offset, uint64_t len, bool unmap) = 0;
  // Makes the storage hold `bytes` (a multiple of 512): SysError when it cannot. No request may run
  // meanwhile unless the backend says otherwise.
  virtual void resize(uint64_t bytes) = 0;
};

// Sparse: a private anonymous mapping without swap reservation. Pages appear as they are written and
// go back to the kernel when discarded or zeroed, so a disk larger than RAM works as long as what is
// written fits (more than that and the kernel's OOM killer decides). `what` names it in errors.
class RamStorage final : public BlkStorage {
 public:
  RamStorage(uint64_t size, const std::string& what);
  ~RamStorage() override;
  RamStorage(const RamStorage&) = delete;
  RamStorage& operator=(const RamStorage&) = delete;

  uint64_t size() const override { return size_; }
  int read(uint64_t offset, const std::vector<iovec>& iov) override;
  int write(uint64_t offset, const std::vector<iovec>& iov) override;
  int flush() override { return 0; }
  int zero(uint64_t offset, uint64_t len, bool unmap) override;
  // Moves the mapping (mremap): nothing may touch the disk meanwhile. Shrinking frees the pages past
  // the new end; growing adds zeroes.
  void resize(uint64_t bytes) override;

 private:
  const std::string what_;
  uint8_t* disk_ = nullptr;
  uint64_t size_;
  uint64_t pageSize_;
};

// A regular file (or block device) through preadv/pwritev/fdatasync/fallocate; its size is the
// capacity, rounded down to whole 512-byte sectors.
class FileStorage final : public BlkStorage {
 public:
  // Opens `path` read-write (read-only when `readOnly`); EINVAL when it holds no whole sector.
  FileStorage(const std::string& path, bool readOnly);

  uint64_t size() const override { return size_.load(std::memory_order_acquire); }
  int read(uint64_t offset, const std::vector<iovec>& iov) override;
  int write(uint64_t offset, const std::vector<iovec>& iov) override;
  int flush() override;
  int zero(uint64_t offset, uint64_t len, bool unmap) override;
  // Safe while requests run. Growing extends a shorter regular file (sparse, ftruncate); a block
  // device, or a file opened read-only, must already be that large (EINVAL / EROFS otherwise).
  // Shrinking never truncates: the bytes past the new end stay in the file.
  void resize(uint64_t bytes) override;

 private:
  const std::string path_;
  const bool readOnly_;
  UniqueFd fd_;
  std::atomic<uint64_t> size_{0};
};

}  // namespace vdpa
