#include "napi/vduse_wrap.h"

#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>

#include "napi/args.h"
#include "napi/device_task.h"
#include "napi/errors.h"

namespace vdpa {

const napi_type_tag VduseWrap::kTag = {0x7664706176647573ULL, 0x6500000000000006ULL};

namespace {

// Tags the External that carries a created device into the constructor.
const napi_type_tag kCreatedTag = {0x7664706176647573ULL, 0x6500000000000007ULL};

}  // namespace

struct Carrier {
  std::shared_ptr<VduseBlk> blk;
  std::shared_ptr<JsRequests> requests;
};

namespace {

// Optional properties, checked again here (lib/vduse.ts checks them first, with better messages).
std::string stringProp(Napi::Object o, const char* key, const std::string& def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsString()) throwTypeArg(std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

uint64_t numberProp(Napi::Object o, const char* key, uint64_t min, uint64_t max, uint64_t def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsNumber()) throwTypeArg(std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= double(min) && d <= double(max)) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throwRangeArg(std::string(key) + " is out of range");
  return static_cast<uint64_t>(d);
}

bool boolProp(Napi::Object o, const char* key, bool def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsBoolean()) throwTypeArg(std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

VduseBlkOptions blkOptions(Napi::Object o) {
  VduseBlkOptions b;
  b.name = stringProp(o, "name", "");
  b.controlPath = stringProp(o, "controlPath", b.controlPath);
  b.file = stringProp(o, "file", "");
  b.capacity = numberProp(o, "capacity", 0, uint64_t{1} << 50, 0);
  b.params.numQueues = static_cast<uint16_t>(numberProp(o, "numQueues", 1, 64, 1));
  b.queueSize = static_cast<uint16_t>(numberProp(o, "queueSize", 1, 32768, 256));
  b.vendorId = static_cast<uint32_t>(numberProp(o, "vendorId", 0, UINT32_MAX, 0));
  b.params.blockSize = static_cast<uint32_t>(numberProp(o, "blockSize", 512, 65536, 512));
  b.params.segMax = static_cast<uint32_t>(numberProp(o, "segMax", 1, 4096, b.params.segMax));
  b.params.sizeMax = static_cast<uint32_t>(numberProp(o, "sizeMax", 512, uint64_t{1} << 31, b.params.sizeMax));
  b.params.readOnly = boolProp(o, "readOnly", false);
  b.params.serial = stringProp(o, "serial", "");
  b.reconnect = boolProp(o, "reconnect", false);
  return b;
}

Napi::Array statsArray(Napi::Env env, const std::vector<VduseQueueStats>& stats) {
  Napi::Array a = Napi::Array::New(env, stats.size());
  for (uint32_t i = 0; i < stats.size(); i++) {
    Napi::Object s = Napi::Object::New(env);
    s.Set("requests", Napi::Number::New(env, static_cast<double>(stats[i].requests)));
    s.Set("readBytes", Napi::Number::New(env, static_cast<double>(stats[i].readBytes)));
    s.Set("writtenBytes", Napi::Number::New(env, static_cast<double>(stats[i].writtenBytes)));
    a.Set(i, s);
  }
  return a;
}

std::vector<VduseQueueStats> snapshot(VduseBlk& blk) {
  std::vector<VduseQueueStats> v;
  for (uint16_t q = 0; q < blk.device().numQueues(); q++) v.push_back(blk.device().stats(q));
  return v;
}

const char* opName(BlkRequest::Op op) {
  switch (op) {
    case BlkRequest::Op::kRead:
      return "read";
    case BlkRequest::Op::kWrite:
      return "write";
    case BlkRequest::Op::kFlush:
      return "flush";
    case BlkRequest::Op::kDiscard:
      return "discard";
    case BlkRequest::Op::kWriteZeroes:
      return "writeZeroes";
    case BlkRequest::Op::kDone:
      break;
  }
  return "none";
}

}  // namespace

// Requests of a JS-handler device waiting for the JS thread; the first one of a batch schedules the call.
struct JsRequests {
  struct Item {
    uint64_t token;
    BlkRequest req;
    std::vector<uint8_t> data;
  };
  std::mutex lock;
  std::vector<Item> items;
  Napi::ThreadSafeFunction tsfn;

  void submit(const std::shared_ptr<JsRequests>& self, uint64_t token, const BlkRequest& req,
              std::vector<uint8_t> data) {
    bool first;
    {
      std::lock_guard<std::mutex> l(lock);
      first = items.empty();
      items.push_back(Item{token, req, std::move(data)});
    }
    if (first) tsfn.NonBlockingCall([self](Napi::Env env, Napi::Function fn) { self->deliver(env, fn); });
  }

  void deliver(Napi::Env env, Napi::Function fn) {
    std::vector<Item> batch;
    {
      std::lock_guard<std::mutex> l(lock);
      batch.swap(items);
    }
    if (batch.empty() || env == nullptr) return;
    try {
      Napi::HandleScope scope(env);
      Napi::Array a = Napi::Array::New(env, batch.size());
      for (uint32_t i = 0; i < batch.size(); i++) {
        const Item& it = batch[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("token", Napi::Number::New(env, static_cast<double>(it.token)));
        o.Set("op", opName(it.req.op));
        o.Set("offset", Napi::Number::New(env, static_cast<double>(it.req.offset)));
        o.Set("length", Napi::Number::New(env, static_cast<double>(it.req.length)));
        if (it.req.op == BlkRequest::Op::kWrite)
          o.Set("data", Napi::Buffer<uint8_t>::Copy(env, it.data.data(), it.data.size()));
        if (!it.req.ranges.empty()) {
          Napi::Array ranges = Napi::Array::New(env, it.req.ranges.size());
          for (uint32_t r = 0; r < it.req.ranges.size(); r++) {
            Napi::Object range = Napi::Object::New(env);
            range.Set("offset", Napi::Number::New(env, static_cast<double>(it.req.ranges[r].offset)));
            range.Set("length", Napi::Number::New(env, static_cast<double>(it.req.ranges[r].length)));
            range.Set("unmap", it.req.ranges[r].unmap);
            ranges.Set(r, range);
          }
          o.Set("ranges", ranges);
        }
        a.Set(i, o);
      }
      fn.Call({a});
    } catch (const Napi::Error& e) {
      reportCallbackFailure(env, e);
    } catch (...) {
      reportCallbackFailure(env);
    }
  }
};

void VduseWrap::registerIn(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "NativeVduse",
                                    {
                                        InstanceMethod<&VduseWrap::Stats>("stats"),
                                        InstanceMethod<&VduseWrap::Close>("close"),
                                        InstanceMethod<&VduseWrap::Complete>("complete"),
                                        InstanceMethod<&VduseWrap::Resize>("resize"),
                                    });
  // The constructor lives as long as this environment.
  auto* ref = new Napi::FunctionReference(Napi::Persistent(ctor));
  env.AddCleanupHook([ref] { delete ref; });
  exports.Set("createVduseBlk", Napi::Function::New(env, &VduseWrap::CreateBlk, "createVduseBlk", ref));
}

VduseWrap::VduseWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VduseWrap>(info) {
  Napi::Env env = info.Env();
  bool tagged = false;
  if (info.Length() > 0 && info[0].IsExternal()) napi_check_object_type_tag(env, info[0], &kCreatedTag, &tagged);
  if (!tagged) throw Napi::TypeError::New(env, "NativeVduse cannot be constructed: use createVduseBlk()");
  auto* carried = info[0].As<Napi::External<Carrier>>().Data();
  blk_ = carried->blk;
  requests_ = carried->requests;
  Napi::Object self = info.This().As<Napi::Object>();
  self.TypeTag(&kTag);
  self.Set("name", blk_->device().name());
  self.Set("capacity", Napi::Number::New(env, static_cast<double>(blk_->capacity())));  // resize() updates it
  self.Set("numQueues", blk_->device().numQueues());
}

VduseWrap::~VduseWrap() {
  // Collected (or the environment is going away) without close(): stopping the thread and
  // destroying the device may wait for the kernel, so that happens off the JS thread.
  if (blk_ && !closing_)
    std::thread([blk = std::move(blk_), requests = std::move(requests_)]() mutable {
      blk.reset();  // the device thread is stopped: nothing submits any more
      if (requests) requests->tsfn.Release();
    }).detach();
}

Napi::Value VduseWrap::CreateBlk(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto* ctor = static_cast<Napi::FunctionReference*>(info.Data());
    Napi::Object options = objectArg(info, 0, "options");
    const VduseBlkOptions opts = blkOptions(options);
    auto created = std::make_shared<Carrier>();
    Napi::Value onRequests = options.Get("onRequests");
    VduseBlk::Submit submit;
    if (!onRequests.IsUndefined()) {
      if (!onRequests.IsFunction()) throwTypeArg("onRequests must be a function");
      auto requests = std::make_shared<JsRequests>();
      requests->tsfn = Napi::ThreadSafeFunction::New(env, onRequests.As<Napi::Function>(), "vdpa:vduse-requests", 0, 1);
      // An idle device does not keep the process alive (like the other devices of this library).
      requests->tsfn.Unref(env);
      created->requests = requests;
      std::weak_ptr<JsRequests> weak = requests;
      submit = [weak](uint64_t token, const BlkRequest& req, std::vector<uint8_t> data) {
        if (auto r = weak.lock()) r->submit(r, token, req, std::move(data));
      };
    }
    return DeviceTask::run(
        env, "vdpa:vduse-create", Napi::Object::New(env),
        [opts, created, submit] { created->blk = std::make_shared<VduseBlk>(opts, submit); },
        [created, ctor](Napi::Env env, bool ok) -> Napi::Value {
          if (!ok) {
            if (created->requests) created->requests->tsfn.Release();
            return env.Undefined();
          }
          auto carrier = Napi::External<Carrier>::New(env, created.get());
          napi_type_tag_object(env, carrier, &kCreatedTag);
          return ctor->New({carrier});
        });
  });
}

Napi::Value VduseWrap::Stats(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    requireTag(info.Env(), info.This(), kTag, "Vduse");
    return statsArray(info.Env(), blk_ ? snapshot(*blk_) : finalStats_);
  });
}

Napi::Value VduseWrap::Close(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Vduse");
    if (!blk_) throwSys(EBADF, "close", "vduse", "the device is closed");
    if (closing_) throwSys(EBUSY, "close", "/dev/vduse/" + blk_->device().name(), "close() is already running");
    closing_ = true;
    std::shared_ptr<VduseBlk> blk = blk_;
    return DeviceTask::run(
        env, "vdpa:vduse-close", info.This().As<Napi::Object>(), [blk] { blk->device().close(); },
        [this, blk](Napi::Env env, bool ok) -> Napi::Value {
          closing_ = false;
          if (ok) {
            finalStats_ = snapshot(*blk);
            blk_.reset();
            if (requests_) requests_->tsfn.Release();
          }
          return env.Undefined();
        });
  });
}

Napi::Value VduseWrap::Complete(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Vduse");
    const uint64_t token = integerArg(info, 0, "token", 1, uint64_t{1} << 53);
    const bool ok = boolArg(info, 1, "ok");
    std::vector<uint8_t> data;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      Napi::Uint8Array bytes = uint8ArrayArg(info, 2, "data");
      data.assign(bytes.Data(), bytes.Data() + bytes.ByteLength());
    }
    if (blk_) blk_->complete(token, ok, std::move(data));  // after close: nobody to answer
    return env.Undefined();
  });
}

Napi::Value VduseWrap::Resize(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    requireTag(env, info.This(), kTag, "Vduse");
    const uint64_t bytes = integerArg(info, 0, "capacity", 512, uint64_t{1} << 50);
    if (bytes % 512 != 0) throwRangeArg("capacity must be a multiple of 512");
    if (!blk_) throwSys(EBADF, "resize", "vduse", "the device is closed");
    if (closing_) throwSys(EBADF, "resize", "/dev/vduse/" + blk_->device().name(), "the device is closing");
    std::shared_ptr<VduseBlk> blk = blk_;
    Napi::Object self = info.This().As<Napi::Object>();
    return DeviceTask::run(
        env, "vdpa:vduse-resize", self, [blk, bytes] { blk->resize(bytes); },
        [blk](Napi::Env env, bool) -> Napi::Value {
          return Napi::Number::New(env, static_cast<double>(blk->capacity()));
        });
  });
}

}  // namespace vdpa
