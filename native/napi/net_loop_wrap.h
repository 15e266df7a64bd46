// NativeNetLoop: a NetLoop (device/net_loop.h) driven on the JS thread. While it runs, the queues it
// uses send their completions to it instead of their JS callbacks (QueueDiversion); a rate timer
// wakes it between completions. Argument checks only; lib/net-loops.ts decides what is passed.
#pragma once

#include <napi.h>
#include <uv.h>

#include <memory>
#include <utility>
#include <vector>

#include "device/net_loop.h"
#include "napi/queue_wrap.h"

namespace vdpa {

class NetLoopWrap : public Napi::ObjectWrap<NetLoopWrap>, private QueueDiversion {
 public:
  static Napi::Function define(Napi::Env env);
  static const napi_type_tag kTag;
  // new NativeNetLoop(onDone(error | undefined, which)): onDone runs once, from the event loop;
  // `which` is the queue the error is about (its place in the addPath arguments, absent sides not
  // counted), or -1.
  explicit NetLoopWrap(const Napi::CallbackInfo& info);
  ~NetLoopWrap() override;

 private:
  // The libuv handles, freed once both are closed (they may outlive this object).
  struct Handles {
    uv_async_t done;  // the loop ended: onDone from a fresh event-loop turn; keeps the loop alive meanwhile
    uv_timer_t timer;
    NetLoopWrap* owner = nullptr;
    int open = 0;
    bool closing = false;
    napi_async_cleanup_hook_handle hook = nullptr;
  };
  static void onDone(uv_async_t* h);
  static void onTimer(uv_timer_t* h);
  static void onClose(uv_handle_t* h);
  static void onEnvCleanup(napi_async_cleanup_hook_handle hook, void* arg);
  static void closeHandles(Handles* h);

  void onQueueCall() override;
  void onQueueStopped() override;
  void run();
  // The loop ended: the queues go back to their JS callbacks, onDone is scheduled.
  void finish();
  void deliverDone();
  void release();
  NetLoopQueue queueArg(const Napi::CallbackInfo& info, size_t i);

  // addPath(rxQueue | null, rxRegion, rxSlot, mergeable, txQueue | null, txRegion, txSlot, txMaxFrame)
  Napi::Value AddPath(const Napi::CallbackInfo& info);
  // setGenerator(frame, count, rate)
  Napi::Value SetGenerator(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  // stop(drain)
  Napi::Value Stop(const Napi::CallbackInfo& info);
  // stats(): [frames, bytes, drops, errors]
  Napi::Value Stats(const Napi::CallbackInfo& info);

  NetLoop loop_;
  std::vector<std::pair<Napi::ObjectReference, QueueWrap*>> queues_;  // pointer cleared once stopped
  std::vector<const VirtQueue*> rings_;                               // the same queues, in addPath order
  std::vector<std::shared_ptr<VirtioDevice>> devices_;
  Napi::FunctionReference onDone_;
  std::unique_ptr<Napi::AsyncContext> async_;
  Handles* handles_ = nullptr;
  bool running_ = false, started_ = false;
};

}  // namespace vdpa
