// NativeQueue: one virtqueue of an open device. Submits batches of chains and hands completions to
// its JS callback through a shared [token, len] array.
#pragma once

#include <napi.h>

#include <memory>

#include "device/virtio_device.h"
#include "napi/batch.h"
#include "napi/completions.h"
#include "napi/fd_poll.h"

namespace vdpa {

class DeviceWrap;

// Something that takes a queue's completions in place of its JS callback (a native loop,
// device/net_loop.h): told on the JS thread when the device signalled the queue, and when the queue
// stopped (the device is closing; the ring must not be touched from then on).
class QueueDiversion {
 public:
  virtual void onQueueCall() = 0;
  virtual void onQueueStopped() = 0;

 protected:
  ~QueueDiversion() = default;
};

class QueueWrap : public Napi::ObjectWrap<QueueWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  static const napi_type_tag kTag;
  // The longest poll window setPoll() takes (BlkOptions.pollMicros): one second.
  static constexpr uint32_t kMaxPollMicros = 1000000;
  explicit QueueWrap(const Napi::CallbackInfo& info);
  ~QueueWrap() override;

  void init(std::shared_ptr<VirtioDevice> device, VirtQueue* queue, Napi::Function callback, DeviceWrap* owner);
  // Stops completion delivery and forgets the device (it is closing).
  void stop();
  // Hands the JS callback every completion the ring holds now (the device was just reset).
  void deliverNow();
  // Sends the queue's completions to `d` instead of the JS callback (nullptr: back to JS).
  void divert(QueueDiversion* d) { diversion_ = d; }
  QueueDiversion* diversion() const { return diversion_; }
  // The queue (nullptr once stopped) and its device, for a diversion.
  VirtQueue* queue() const { return queue_; }
  const std::shared_ptr<VirtioDevice>& device() const { return device_; }

 private:
  static void onCall(void* self);
  // Drains the ring into the JS callback. Never throws: it runs from libuv, maybe in an
  // environment that is being torn down.
  void deliver();
  // Calls the JS callback with `count` completions (and the broken-ring error); false once the
  // queue is gone (the callback closed the device) or the callback threw.
  bool handOver(size_t count, bool broken);
  // Polls the used ring for up to pollMicros_ after a wake-up's completions (setPoll).
  template <typename Sink>
  void poll(VirtQueue* q, Sink& sink);
  // The queue, or an EBADF VdpaError once the device closed.
  VirtQueue& requireQueue();

  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value SetPoll(const Napi::CallbackInfo& info);
  // park(true): completions stay in the used ring (a native loop is about to take the queue and
  // reads them there); park(false): they go to JS again, those waiting first.
  Napi::Value Park(const Napi::CallbackInfo& info);
  // deliver(): hands over what the used ring holds now (a hand-over, after the device was suspended).
  Napi::Value Deliver(const Napi::CallbackInfo& info);

  std::shared_ptr<VirtioDevice> device_;
  DeviceWrap* owner_ = nullptr;  // cleared by whichever of the two is finalized first
  VirtQueue* queue_ = nullptr;
  FdPoll* poll_ = nullptr;
  Napi::FunctionReference callback_;
  CompletionArray completions_;
  DecodedBatch batch_;  // scratch for submit()
  std::unique_ptr<Napi::AsyncContext> async_;
  uint32_t pollMicros_ = 0;
  QueueDiversion* diversion_ = nullptr;
  bool parked_ = false;
};

}  // namespace vdpa
