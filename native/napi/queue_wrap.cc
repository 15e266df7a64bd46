#include "napi/queue_wrap.h"

#include <chrono>
#include <utility>

#include "napi/args.h"
#include "napi/device_wrap.h"
#include "napi/errors.h"

namespace vdpa {

namespace {
inline void spinPause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

const napi_type_tag QueueWrap::kTag = {0x7664706171756575ULL, 0x6500000000000002ULL};

Napi::Function QueueWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeQueue",
                     {
                         InstanceMethod<&QueueWrap::Submit>("submit"),
                         InstanceMethod<&QueueWrap::Ref>("ref"),
                         InstanceMethod<&QueueWrap::SetPoll>("setPoll"),
                         InstanceMethod<&QueueWrap::Unref>("unref"),
                         InstanceMethod<&QueueWrap::Deliver>("deliver"),
                         InstanceMethod<&QueueWrap::Park>("park"),
                     });
}

QueueWrap::QueueWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<QueueWrap>(info) {
  info.This().As<Napi::Object>().TypeTag(&kTag);
}

QueueWrap::~QueueWrap() {
  if (owner_) owner_->forgetQueue(this);
  stop();
}

void QueueWrap::init(std::shared_ptr<VirtioDevice> device, VirtQueue* queue, Napi::Function callback,
                     DeviceWrap* owner) {
  Napi::Env env = Env();
  device_ = std::move(device);
  queue_ = queue;
  owner_ = owner;
  callback_ = Napi::Persistent(callback);
  async_ = std::make_unique<Napi::AsyncContext>(env, "vdpa:queue");
  // At most one completion per descriptor between two callbacks.
  const size_t n = queue->ring->size();
  completions_.init(Value(), n);
  Value().Set("size", Napi::Number::New(env, n));
  Value().Set("index", Napi::Number::New(env, queue->index));
  poll_ = FdPoll::start(env, queue->callFd.get(), onCall, this);
}

void QueueWrap::stop() {
  if (QueueDiversion* d = diversion_) {
    diversion_ = nullptr;
    d->onQueueStopped();
  }
  if (poll_) {
    poll_->release();
    poll_ = nullptr;
  }
  // The device is about to drop the ring; what it still held is failed by the TypeScript side.
  queue_ = nullptr;
  owner_ = nullptr;
}

VirtQueue& QueueWrap::requireQueue() {
  VirtioDevice& device = requireIdle(device_, "queue");
  if (!queue_) throwSys(EBADF, "queue", device.path(), "the device is closed");
  return *queue_;
}

void QueueWrap::onCall(void* self) {
  auto* w = static_cast<QueueWrap*>(self);
  drainEventFd(w->queue_->callFd.get());
  if (w->diversion_)
    w->diversion_->onQueueCall();
  else if (!w->parked_)
    w->deliver();
}

void QueueWrap::deliverNow() {
  if (queue_ && !diversion_ && !parked_) deliver();
}

void QueueWrap::deliver() {
  try {
    Napi::HandleScope scope(Env());
    VirtQueue* q = queue_;
    std::shared_ptr<VirtioDevice> device = device_;  // the callback may close the device
    auto sink = [this](size_t count, bool broken) { return handOver(count, broken); };
    q->deliver(completions_.data(), completions_.capacity(), sink);
    if (pollMicros_ > 0) poll(q, sink);
    // A close on the threadpool waits for this count (the queue may be stopped by now, the ring not).
    device->noteInFlight(*q);
  } catch (...) {
    // Only N-API calls failing in an environment being torn down get here; nobody is listening.
  }
}

template <typename Sink>
void QueueWrap::poll(VirtQueue* q, Sink& sink) {
  // One window per wake-up, never extended, so the event loop gets its turn at least that often.
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(pollMicros_);
  bool found = false;
  while (queue_ && !q->ring->broken() && q->ring->inFlight() > 0 && std::chrono::steady_clock::now() < until) {
    // enableInterrupts() is the cheap "is there more?" (it leaves interrupts armed, as they were).
    if (q->ring->enableInterrupts()) {
      q->deliver(completions_.data(), completions_.capacity(), sink);
      found = true;
    } else {
      spinPause();
    }
  }
  if (!queue_ || !found) return;
  // The device signalled what the window took: clear it, so the loop does not wake for nothing,
  // and look once more for what came between the last check and the clear.
  drainEventFd(q->callFd.get());
  if (q->ring->enableInterrupts()) q->deliver(completions_.data(), completions_.capacity(), sink);
}

bool QueueWrap::handOver(size_t count, bool broken) {
  Napi::Env env = Env();
  try {
    completions_.publish(Value());
    napi_value args[2] = {Napi::Number::New(env, static_cast<double>(count)),
                          broken ? makeVdpaError(env, queue_->brokenError(device_->path())).Value() : env.Undefined()};
    napi_value result;
    if (napi_make_callback(env, static_cast<napi_async_context>(*async_), Value(), callback_.Value(), 2, args,
                           &result) != napi_ok) {
      reportCallbackFailure(env);
      return false;
    }
  } catch (const Napi::Error& e) {
    reportCallbackFailure(env, e);
    return false;
  }
  // The callback may have closed the device, and with it this queue.
  return queue_ != nullptr;
}

// Batch layout (Uint32Array): per chain [token, count, then count x (region, offset, length, flags)];
// flags bit 0 = device-writable. Returns how many chains the ring took; the rest are the caller's to
// resubmit after completions.
Napi::Value QueueWrap::Submit(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Queue");
    VirtQueue& q = requireQueue();
    if (diversion_) throwSys(EBUSY, "queue", device_->path(), "a native loop holds this queue: stop it first");
    auto batch = uint32ArrayArg(info, 0, "batch");
    const uint32_t chains = u32Arg(info, 1, "count");
    if (q.ring->broken()) throw q.brokenError(device_->path());
    decodeBatch(
        env, batch.Data(), batch.ElementLength(), chains, *q.ring,
        [this](uint32_t r, uint64_t off, uint64_t len, uint64_t* iova) {
          return device_->translate(r, off, len, iova);
        },
        batch_);
    const uint32_t accepted = addBatch(*q.ring, batch_);
    device_->publish(q);
    device_->noteInFlight(q);
    return Napi::Number::New(env, accepted);
  });
}

Napi::Value QueueWrap::SetPoll(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Queue");
    pollMicros_ = u32Arg(info, 0, "microseconds", 0, kMaxPollMicros);
    return info.Env().Undefined();
  });
}

Napi::Value QueueWrap::Ref(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Queue");
    if (poll_) poll_->ref();
    return info.Env().Undefined();
  });
}

Napi::Value QueueWrap::Unref(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Queue");
    if (poll_) poll_->unref();
    return info.Env().Undefined();
  });
}

Napi::Value QueueWrap::Park(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Queue");
    parked_ = boolArg(info, 0, "on");
    if (!parked_) deliverNow();
    return info.Env().Undefined();
  });
}

Napi::Value QueueWrap::Deliver(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Queue");
    requireQueue();
    deliverNow();
    return info.Env().Undefined();
  });
}

}  // namespace vdpa
