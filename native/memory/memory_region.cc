#include "memory/memory_region.h"

#include <sys/mman.h>
#include <unistd.h>

#include "common/sys_error.h"

namespace vdpa {

namespace {
size_t roundUp(size_t v, size_t align) { return (v + align - 1) / align * align; }
}  // namespace

size_t MemoryRegion::systemPageSize() {
  static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

MemoryRegion::MemoryRegion(size_t size, bool wantHugePages) {
  if (size == 0) size = 1;
  void* p = MAP_FAILED;
  if (wantHugePages) {
    size_t len = roundUp(size, kHugePageSize);
    p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE | MAP_HUGETLB, -1, 0);
    if (p != MAP_FAILED) {
      size_ = len;
      hugePages_ = true;
    }
  }
  if (p == MAP_FAILED) {
    size_t len = roundUp(size, systemPageSize());
    p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) throwErrno("mmap", "", "the process may be out of memory or address space");
    size_ = len;
  }
  data_ = static_cast<uint8_t*>(p);
}

MemoryRegion::~MemoryRegion() {
  if (data_) ::munmap(data_, size_);
}

}  // namespace vdpa
