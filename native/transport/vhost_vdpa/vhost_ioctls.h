// The vhost-vdpa device fd, one thin method per ioctl (or IOTLB write): the call, its EINTR retry and
// the hint its errors carry. No policy: what to call when is VhostVdpaTransport's business. Throwing
// methods raise SysError "ioctl(<REQUEST>)" on `path`; the *Quiet ones return the errno instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/unique_fd.h"
#include "transport/transport.h"

namespace vdpa {

// One page of the vhost-vdpa fd mapped write-only: a queue's doorbell. munmap'd on destruction.
class DoorbellPage {
 public:
  DoorbellPage() = default;
  DoorbellPage(void* p, size_t len) : p_(p), len_(len) {}
  DoorbellPage(DoorbellPage&& o) noexcept;
  DoorbellPage& operator=(DoorbellPage&& o) noexcept;
  DoorbellPage(const DoorbellPage&) = delete;
  DoorbellPage& operator=(const DoorbellPage&) = delete;
  ~DoorbellPage() { release(); }
  bool valid() const { return p_ != nullptr; }
  void ring(uint16_t index) const { *static_cast<volatile uint16_t*>(p_) = index; }

 private:
  void release() noexcept;
  void* p_ = nullptr;
  size_t len_ = 0;
};

class VhostIoctls {
 public:
  // Opens `path` read-write (hints for a missing module, permissions, a busy or vanished device).
  explicit VhostIoctls(std::string path);

  const std::string& path() const { return path_; }
  // The queue count the ENOBUFS hint names.
  void setQueueCount(uint16_t n) { queueCount_ = n; }
  // The hint for an errno no call has a better one for ("" when there is none).
  std::string defaultHint(int err) const;

  // ---- device
  void setOwner();
  uint64_t getBackendFeatures();
  void setBackendFeatures(uint64_t features);
  // false when the kernel predates VHOST_VDPA_GET_IOVA_RANGE (ENOTTY).
  bool getIovaRange(IovaRange* range);
  uint32_t getDeviceId();
  uint64_t getFeatures();
  // Hints name the features offered (`offered`) when the device refuses these.
  void setFeatures(uint64_t features, uint64_t offered);
  uint32_t getConfigSize();
  uint32_t getVqsCount();
  uint16_t getVringNum();
  void setConfigCall(int fd);
  uint8_t getStatus();
  int getStatusQuiet(uint8_t* status);
  void setStatus(uint8_t status);
  int setStatusQuiet(uint8_t status);
  void getConfig(uint32_t offset, void* buf, uint32_t len);
  void setConfig(uint32_t offset, const void* buf, uint32_t len);
  void suspend();
  void resume();
  uint32_t getGroupNum();
  uint32_t getAsNum();
  void setGroupAsid(uint32_t group, uint32_t asid);

  // ---- queues
  void setVringCall(unsigned index, int fd);
  void setVringNum(unsigned index, unsigned num);
  void setVringBase(unsigned index, unsigned base);
  // Addresses are IOVAs: vhost-vdpa passes them to the device untranslated.
  void setVringAddr(unsigned index, uint64_t desc, uint64_t avail, uint64_t used);
  void setVringKick(unsigned index, int fd);
  // Takes both eventfds of queue `index` back from the kernel (no throw).
  void unbindVring(unsigned index) noexcept;
  void setVringEnable(unsigned index);
  uint32_t getVringBase(unsigned index);
  uint32_t getVringGroup(unsigned index);
  // Queue `index`'s doorbell page, or an invalid one when the parent offers none (VDUSE, for one).
  DoorbellPage mapDoorbell(unsigned index, uint64_t pageSize);

  // ---- memory: one struct vhost_msg_v2 written to the fd (ASID 0, read-write). 0 or the errno.
  int writeIotlb(uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr);
  // The updates written between these two reach the device as one (VHOST_BACKEND_F_IOTLB_BATCH).
  int beginIotlbBatch();
  int endIotlbBatch();

 private:
  int quiet(unsigned long request, void* arg);
  void call(unsigned long request, void* arg, const char* name, const std::string& hint = "");
  template <typename T>
  T get(unsigned long request, const char* name) {
    T v{};
    call(request, &v, name);
    return v;
  }
  // A vhost_vring_state request for queue `index`: the num the kernel answers.
  uint32_t vringState(unsigned long request, const char* name, unsigned index);

  const std::string path_;
  UniqueFd fd_;
  uint16_t queueCount_ = 0;
};

}  // namespace vdpa
