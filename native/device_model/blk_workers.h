// A few native threads that run a blk device's storage calls (preadv, pwritev, fdatasync, fallocate)
// so that requests overlap: the page cache, the file system or the disk underneath takes many at once,
// while the device thread only moves descriptors. A request's bytes travel in a buffer of its own (a
// write's data copied out of the chain before, a read's copied in after, both on the device thread),
// so a worker never touches driver memory that a reset may unmap while it works. A flush waits for
// the writes submitted before it, then runs fdatasync: it covers every write the driver sent before it,
// completed or not.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "device_model/blk_executor.h"
#include "device_model/blk_storage.h"

namespace vdpa {

class BlkWorkers {
 public:
  // Called on a worker when request `token` is done; a read's `data` holds its bytes.
  using Done = std::function<void(uint64_t token, bool ok, std::vector<uint8_t> data)>;

  // `storage` must allow concurrent calls (FileStorage does: positioned I/O on one fd). Threads start
  // as requests wait for one, up to `maxThreads`.
  BlkWorkers(BlkStorage& storage, unsigned maxThreads, Done done);
  ~BlkWorkers();
  BlkWorkers(const BlkWorkers&) = delete;
  BlkWorkers& operator=(const BlkWorkers&) = delete;

  // Any thread. `data` holds a write's bytes. After stop() requests are dropped (never answered).
  void submit(uint64_t token, const BlkRequest& req, std::vector<uint8_t> data);
  // Lets the requests being worked on finish, drops the waiting ones and joins the threads.
  void stop();

 private:
  struct Job {
    uint64_t token;
    BlkRequest req;
    std::vector<uint8_t> data;
    uint64_t seq;  // submission order
  };
  void run();
  int execute(Job& job);

  BlkStorage& storage_;
  const unsigned maxThreads_;
  const Done done_;
  std::mutex lock_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;              // under lock_
  unsigned idle_ = 0;                 // under lock_: threads waiting for a job
  uint64_t seq_ = 0;                  // under lock_
  std::set<uint64_t> changes_;        // under lock_: writes, discards, write-zeroes not done yet, by seq
  std::condition_variable changed_;   // one of changes_ is done
  bool stopping_ = false;             // under lock_
  std::vector<std::thread> threads_;  // under lock_
};

}  // namespace vdpa
