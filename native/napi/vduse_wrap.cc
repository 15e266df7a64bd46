#include "napi/vduse_wrap.h"

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
  b.params.blockSize = static_cast<uint32_t>(numberProp(o, "blockSize", 512, 65536, 512));
  b.params.segMax = static_cast<uint32_t>(numberProp(o, "segMax", 1, 4096, b.params.segMax));
  b.params.sizeMax = static_cast<uint32_t>(numberProp(o, "sizeMax", 512, uint64_t{1} << 31, b.params.sizeMax));
  b.params.readOnly = boolProp(o, "readOnly", false);
  b.params.serial = stringProp(o, "serial", "");
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

}  // namespace

void VduseWrap::registerIn(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "NativeVduse",
                                    {
                                        InstanceMethod<&VduseWrap::Stats>("stats"),
                                        InstanceMethod<&VduseWrap::Close>("close"),
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
  blk_ = *info[0].As<Napi::External<std::shared_ptr<VduseBlk>>>().Data();
  Napi::Object self = info.This().As<Napi::Object>();
  self.TypeTag(&kTag);
  self.Set("name", blk_->device().name());
  self.Set("capacity", Napi::Number::New(env, static_cast<double>(blk_->capacity())));
  self.Set("numQueues", blk_->device().numQueues());
}

VduseWrap::~VduseWrap() {
  // Collected (or the environment is going away) without close(): stopping the thread and
  // destroying the device may wait for the kernel, so that happens off the JS thread.
  if (blk_ && !closing_) std::thread([blk = std::move(blk_)]() mutable { blk.reset(); }).detach();
}

Napi::Value VduseWrap::CreateBlk(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto* ctor = static_cast<Napi::FunctionReference*>(info.Data());
    const VduseBlkOptions opts = blkOptions(objectArg(info, 0, "options"));
    auto created = std::make_shared<std::shared_ptr<VduseBlk>>();
    return DeviceTask::run(
        env, "vdpa:vduse-create", Napi::Object::New(env),
        [opts, created] { *created = std::make_shared<VduseBlk>(opts); },
        [created, ctor](Napi::Env env, bool ok) -> Napi::Value {
          if (!ok) return env.Undefined();
          auto carrier = Napi::External<std::shared_ptr<VduseBlk>>::New(env, created.get());
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
          }
          return env.Undefined();
        });
  });
}

}  // namespace vdpa
