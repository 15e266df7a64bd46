#include "device_model/blk_workers.h"

#include <sys/uio.h>

#include <system_error>
#include <utility>

namespace vdpa {

namespace {
bool changesData(BlkRequest::Op op) {
  return op == BlkRequest::Op::kWrite || op == BlkRequest::Op::kDiscard || op == BlkRequest::Op::kWriteZeroes;
}
}  // namespace

BlkWorkers::BlkWorkers(BlkStorage& storage, unsigned maxThreads, Done done)
    : storage_(storage), maxThreads_(maxThreads == 0 ? 1 : maxThreads), done_(std::move(done)) {
  // One thread from the start: a failure to make it is the constructor's (the device is not made).
  threads_.emplace_back([this] { run(); });
}

BlkWorkers::~BlkWorkers() { stop(); }

void BlkWorkers::submit(uint64_t token, const BlkRequest& req, std::vector<uint8_t> data) {
  std::lock_guard<std::mutex> lock(lock_);
  if (stopping_) return;
  const uint64_t seq = ++seq_;
  if (changesData(req.op)) changes_.insert(seq);
  jobs_.push_back(Job{token, req, std::move(data), seq});
  if (idle_ == 0 && threads_.size() < maxThreads_) {
    try {
      threads_.emplace_back([this] { run(); });
      return;
    } catch (const std::system_error&) {
      // No more threads now: the ones there take the job.
    }
  }
  wake_.notify_one();
}

void BlkWorkers::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(lock_);
    stopping_ = true;
    jobs_.clear();
    changes_.clear();
    threads.swap(threads_);
  }
  wake_.notify_all();
  changed_.notify_all();
  for (std::thread& t : threads) t.join();
}

void BlkWorkers::run() {
  std::unique_lock<std::mutex> lock(lock_);
  for (;;) {
    if (jobs_.empty()) {
      if (stopping_) return;
      idle_++;
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      idle_--;
      continue;
    }
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    if (job.req.op == BlkRequest::Op::kFlush)
      changed_.wait(lock, [&] { return stopping_ || changes_.empty() || *changes_.begin() > job.seq; });
    if (stopping_) return;
    lock.unlock();
    const int err = execute(job);
    done_(job.token, err == 0, std::move(job.data));
    lock.lock();
    if (changesData(job.req.op) && changes_.erase(job.seq) > 0) changed_.notify_all();
  }
}

int BlkWorkers::execute(Job& job) {
  const BlkRequest& req = job.req;
  switch (req.op) {
    case BlkRequest::Op::kRead:
      job.data.resize(req.length);
      return storage_.read(req.offset, {iovec{job.data.data(), job.data.size()}});
    case BlkRequest::Op::kWrite:
      return storage_.write(req.offset, {iovec{job.data.data(), job.data.size()}});
    case BlkRequest::Op::kFlush:
      return storage_.flush();
    case BlkRequest::Op::kDiscard:
    case BlkRequest::Op::kWriteZeroes:
      for (const auto& r : req.ranges)
        if (int err = storage_.zero(r.offset, r.length, r.unmap)) return err;
      return 0;
    case BlkRequest::Op::kDone:
      break;
  }
  return 0;
}

}  // namespace vdpa
