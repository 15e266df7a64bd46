#include "napi/net_loop_wrap.h"

#include <algorithm>

#include "napi/args.h"
#include "napi/device_wrap.h"
#include "napi/errors.h"

namespace vdpa {

const napi_type_tag NetLoopWrap::kTag = {0x7664706171756575ULL, 0x6500000000000007ULL};

Napi::Function NetLoopWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeNetLoop",
                     {
                         InstanceMethod<&NetLoopWrap::AddPath>("addPath"),
                         InstanceMethod<&NetLoopWrap::SetGenerator>("setGenerator"),
                         InstanceMethod<&NetLoopWrap::Start>("start"),
                         InstanceMethod<&NetLoopWrap::Stop>("stop"),
                         InstanceMethod<&NetLoopWrap::Stats>("stats"),
                     });
}

NetLoopWrap::NetLoopWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetLoopWrap>(info) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kTag);
  try {
    onDone_ = Napi::Persistent(functionArg(info, 0, "onDone"));
  } catch (const ArgError& e) {
    throwTypeError(env, e.what());
  }
  async_ = std::make_unique<Napi::AsyncContext>(env, "vdpa:netLoop");
}

NetLoopWrap::~NetLoopWrap() {
  if (running_) loop_.abandon(makeSysError(ECANCELED, "netLoop"));
  release();
  if (handles_) {
    handles_->owner = nullptr;
    closeHandles(handles_);
    handles_ = nullptr;
  }
}

NetLoopQueue NetLoopWrap::queueArg(const Napi::CallbackInfo& info, size_t i) {
  NetLoopQueue q;
  if (info[i].IsNull() || info[i].IsUndefined()) return q;
  requireTag(info.Env(), info[i], QueueWrap::kTag, "Queue");
  QueueWrap* w = QueueWrap::Unwrap(info[i].As<Napi::Object>());
  VirtioDevice& device = requireIdle(w->device(), "netLoop");
  if (!w->queue()) throwSys(EBADF, "netLoop", device.path(), "the device is closed");
  for (const auto& [ref, other] : queues_)
    if (other == w) throwSys(EINVAL, "netLoop", device.path(), "a queue used twice in one loop");
  q.device = w->device();
  q.queue = w->queue();
  q.region = u32Arg(info, i + 1, "region");
  q.slot = u32Arg(info, i + 2, "slot", 1);
  queues_.emplace_back(Napi::Persistent(info[i].As<Napi::Object>()), w);
  rings_.push_back(q.queue);
  if (std::find(devices_.begin(), devices_.end(), q.device) == devices_.end()) devices_.push_back(q.device);
  return q;
}

Napi::Value NetLoopWrap::AddPath(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "NetLoop");
    if (started_) throwSys(EINVAL, "netLoop", "", "the loop has started");
    NetLoopQueue rx = queueArg(info, 0);
    rx.mergeable = boolArg(info, 3, "mergeable");
    NetLoopQueue tx = queueArg(info, 4);
    tx.maxFrame = u32Arg(info, 7, "maxFrame");
    loop_.addPath(rx, tx);
    return info.Env().Undefined();
  });
}

Napi::Value NetLoopWrap::SetGenerator(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "NetLoop");
    auto frame = uint8ArrayArg(info, 0, "frame");
    const uint64_t count = integerArg(info, 1, "count", 0, uint64_t{1} << 53);
    const uint32_t rate = u32Arg(info, 2, "rate");
    loop_.setGenerator(std::vector<uint8_t>(frame.Data(), frame.Data() + frame.ByteLength()), count, rate);
    return info.Env().Undefined();
  });
}

Napi::Value NetLoopWrap::Start(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "NetLoop");
    if (started_) throwSys(EINVAL, "netLoop", "", "the loop has started");
    for (const auto& [ref, w] : queues_)
      if (w->diversion()) throwSys(EBUSY, "netLoop", w->device()->path(), "another native loop holds the queue");
    uv_loop_t* uvLoop = nullptr;
    if (napi_get_uv_event_loop(env, &uvLoop) != napi_ok) throwSys(EINVAL, "napi_get_uv_event_loop");
    loop_.start(NetLoop::Clock::now());
    auto* h = new Handles();
    h->owner = this;
    uv_async_init(uvLoop, &h->done, onDone);
    uv_timer_init(uvLoop, &h->timer);
    h->done.data = h;
    h->timer.data = h;
    h->open = 2;
    napi_add_async_cleanup_hook(env, onEnvCleanup, h, &h->hook);
    handles_ = h;
    for (const auto& [ref, w] : queues_) w->divert(this);
    started_ = running_ = true;
    run();
    return env.Undefined();
  });
}

Napi::Value NetLoopWrap::Stop(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "NetLoop");
    const bool drain = boolArg(info, 0, "drain");
    if (!running_) return info.Env().Undefined();
    loop_.stop(drain);
    if (loop_.finished())
      finish();
    else
      run();
    return info.Env().Undefined();
  });
}

Napi::Value NetLoopWrap::Stats(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "NetLoop");
    const NetLoopStats& s = loop_.stats();
    Napi::Array a = Napi::Array::New(env, 4);
    a.Set(0u, Napi::Number::New(env, static_cast<double>(s.frames)));
    a.Set(1u, Napi::Number::New(env, static_cast<double>(s.bytes)));
    a.Set(2u, Napi::Number::New(env, static_cast<double>(s.drops)));
    a.Set(3u, Napi::Number::New(env, static_cast<double>(s.errors)));
    return a;
  });
}

void NetLoopWrap::onQueueCall() { run(); }

void NetLoopWrap::onQueueStopped() {
  // Called from QueueWrap::stop (the device is closing, or the queue was finalized): its ring must
  // not be touched any more, nor any other ring of the closing device.
  for (auto& [ref, w] : queues_)
    if (w && !w->diversion()) w = nullptr;
  if (!running_) return;
  loop_.abandon(makeSysError(ECANCELED, "netLoop", devices_.empty() ? "" : devices_[0]->path(),
                             "the device was closed under the loop"));
  finish();
}

void NetLoopWrap::run() {
  if (!running_) return;
  int64_t wait = -1;
  bool busy = false;
  for (const auto& d : devices_) {
    if (d->closed()) loop_.abandon(makeSysError(ECANCELED, "netLoop", d->path()));
    busy = busy || d->busy();
  }
  if (!loop_.finished()) {
    if (busy)
      wait = 1000000;  // a step runs on the threadpool: look again in a millisecond
    else
      wait = loop_.pump(NetLoop::Clock::now());
  }
  if (loop_.finished()) return finish();
  if (wait >= 0)
    uv_timer_start(&handles_->timer, onTimer, std::max<uint64_t>(1, (static_cast<uint64_t>(wait) + 999999) / 1000000),
                   0);
  else
    uv_timer_stop(&handles_->timer);
}

void NetLoopWrap::onTimer(uv_timer_t* h) {
  auto* hs = static_cast<Handles*>(h->data);
  if (hs->owner) hs->owner->run();
}

void NetLoopWrap::release() {
  for (auto& [ref, w] : queues_)
    if (w && w->diversion() == this) w->divert(nullptr);
}

void NetLoopWrap::finish() {
  if (!running_) return;
  running_ = false;
  release();
  uv_timer_stop(&handles_->timer);
  uv_async_send(&handles_->done);
}

void NetLoopWrap::onDone(uv_async_t* h) {
  auto* hs = static_cast<Handles*>(h->data);
  NetLoopWrap* self = hs->owner;
  hs->owner = nullptr;
  closeHandles(hs);
  if (!self) return;
  self->handles_ = nullptr;
  self->deliverDone();
}

void NetLoopWrap::deliverDone() {
  Napi::Env env = Env();
  try {
    Napi::HandleScope scope(env);
    queues_.clear();  // the queues may go now
    const auto failed = std::find(rings_.begin(), rings_.end(), loop_.failedQueue());
    const double which = loop_.failedQueue() && failed != rings_.end() ? double(failed - rings_.begin()) : -1;
    napi_value args[2] = {loop_.error() ? makeVdpaError(env, *loop_.error()).Value() : env.Undefined(),
                          Napi::Number::New(env, which)};
    napi_value result;
    if (napi_make_callback(env, static_cast<napi_async_context>(*async_), Value(), onDone_.Value(), 2, args, &result) !=
        napi_ok)
      reportCallbackFailure(env);
  } catch (const Napi::Error& e) {
    reportCallbackFailure(env, e);
  } catch (...) {
    // The environment is being torn down: nobody is listening.
  }
}

void NetLoopWrap::closeHandles(Handles* h) {
  if (h->closing) return;
  h->closing = true;
  uv_timer_stop(&h->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&h->done), onClose);
  uv_close(reinterpret_cast<uv_handle_t*>(&h->timer), onClose);
}

void NetLoopWrap::onClose(uv_handle_t* h) {
  auto* hs = static_cast<Handles*>(h->data);
  if (--hs->open > 0) return;
  // Removing the hook tells an environment being torn down that these handles are gone.
  if (hs->hook) napi_remove_async_cleanup_hook(hs->hook);
  delete hs;
}

void NetLoopWrap::onEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
  auto* hs = static_cast<Handles*>(arg);
  if (NetLoopWrap* self = hs->owner) {
    self->running_ = false;
    self->release();
    self->handles_ = nullptr;
  }
  hs->owner = nullptr;
  closeHandles(hs);
}

}  // namespace vdpa
