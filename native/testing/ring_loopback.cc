#include "testing/ring_loopback.h"

#include <chrono>
#include <cstring>

#include "common/checks.h"
#include "napi/args.h"
#include "napi/batch.h"
#include "napi/errors.h"
#include "testing/testing_addon.h"

namespace vdpa {

const napi_type_tag RingLoopback::kTag = {0x76647061726c6f6fULL, 0x7062000000000004ULL};

void registerRingLoopback(Napi::Env env, Napi::Object exports) {
  exports.Set("RingLoopback", RingLoopback::define(env));
}

Napi::Function RingLoopback::define(Napi::Env env) {
  return DefineClass(env, "RingLoopback",
                     {
                         InstanceMethod<&RingLoopback::Submit>("submit"),
                         InstanceMethod<&RingLoopback::Publish>("publish"),
                         InstanceMethod<&RingLoopback::DevicePop>("devicePop"),
                         InstanceMethod<&RingLoopback::DeviceCompleteAll>("deviceCompleteAll"),
                         InstanceMethod<&RingLoopback::DevicePush>("devicePush"),
                         InstanceMethod<&RingLoopback::DevicePublish>("devicePublish"),
                         InstanceMethod<&RingLoopback::DeviceEnableNotify>("deviceEnableNotify"),
                         InstanceMethod<&RingLoopback::DeviceJumpUsedIdx>("deviceJumpUsedIdx"),
                         InstanceMethod<&RingLoopback::Drain>("drain"),
                         InstanceMethod<&RingLoopback::EnableInterrupts>("enableInterrupts"),
                         InstanceMethod<&RingLoopback::State>("state"),
                         InstanceMethod<&RingLoopback::Abandon>("abandon"),
                         InstanceMethod<&RingLoopback::RunNative>("runNative"),
                         InstanceMethod<&RingLoopback::RoundTrip>("roundTrip"),
                         InstanceMethod<&RingLoopback::PokeDescriptor>("pokeDescriptor"),
                         InstanceMethod<&RingLoopback::PokeAvail>("pokeAvail"),
                         InstanceMethod<&RingLoopback::PeekDescriptor>("peekDescriptor"),
                         InstanceMethod<&RingLoopback::EventSuppression>("eventSuppression"),
                         InstanceMethod<&RingLoopback::PokeEventSuppression>("pokeEventSuppression"),
                     });
}

// new RingLoopback(size, eventIdx, indirectMax, dataBytes[, packed])
RingLoopback::RingLoopback(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingLoopback>(info) {
  Napi::Env env = info.Env();
  const bool packed = !info[4].IsUndefined() && boolArg(info, 4, "packed");
  const uint32_t size = u32Arg(info, 0, "size", 1, kMaxQueueSize);
  if (!queueSizeValid(size, kMaxQueueSize, packed)) throwRangeError(env, "size must be a power of two <= 32768");
  const bool eventIdx = boolArg(info, 1, "eventIdx");
  const uint32_t indirectMax = u32Arg(info, 2, "indirectMax", 0, 4096);
  const uint32_t dataBytes = u32Arg(info, 3, "dataBytes");
  try {
    DriverQueueOptions opts{static_cast<uint16_t>(size), eventIdx, static_cast<uint16_t>(indirectMax)};
    ringMem_ = std::make_unique<MemoryRegion>(
        packed ? PackedDriverQueue::memorySize(opts) : SplitDriverQueue::memorySize(opts), false);
    data_ = std::make_shared<MemoryRegion>(std::max<uint32_t>(dataBytes, 4096), false);
    const RingMemory ring{ringMem_->data(), kRingIova, ringMem_->size()};
    if (packed) {
      auto q = std::make_unique<PackedDriverQueue>(opts, ring);
      packed_ = q.get();
      driver_ = std::move(q);
      device_ = std::make_unique<PackedDeviceQueue>(opts.size, driver_->descIova(), driver_->driverAreaIova(),
                                                    driver_->deviceAreaIova(), opts.eventIdx,
                                                    static_cast<GuestMemory&>(*this));
    } else {
      auto q = std::make_unique<SplitDriverQueue>(opts, ring);
      split_ = q.get();
      driver_ = std::move(q);
      device_ = std::make_unique<SplitDeviceQueue>(opts.size, driver_->descIova(), driver_->driverAreaIova(),
                                                   driver_->deviceAreaIova(), opts.eventIdx,
                                                   static_cast<GuestMemory&>(*this));
    }
  } catch (const SysError& e) {
    throw makeVdpaError(env, e);
  }
  completions_.init(Value(), driver_->size());
  // The buffer holds its own reference: the data area stays mapped while any JS view exists.
  auto* keep = new std::shared_ptr<MemoryRegion>(data_);
  Value().Set("data", Napi::ArrayBuffer::New(
                          env, data_->data(), data_->size(),
                          [](Napi::Env, void*, std::shared_ptr<MemoryRegion>* hint) { delete hint; }, keep));
  Value().Set("packed", Napi::Boolean::New(env, packed));
  info.This().As<Napi::Object>().TypeTag(&kTag);
}

uint8_t* RingLoopback::translate(uint64_t iova, uint64_t len) {
  for (auto [base, mem] : {std::pair{kRingIova, ringMem_.get()}, std::pair{kDataIova, data_.get()}}) {
    if (iova >= base && mem->contains(iova - base, len)) return mem->data() + (iova - base);
  }
  return nullptr;
}

uint32_t RingLoopback::submitBatch(Napi::Env env, const uint32_t* w, size_t words, uint32_t chains) {
  decodeBatch(
      env, w, words, chains, *driver_,
      [this](uint32_t r, uint64_t off, uint64_t len, uint64_t* iova) {
        if (r != 1 || len == 0 || !data_->contains(off, len)) return false;
        *iova = kDataIova + off;
        return true;
      },
      batch_);
  return addBatch(*driver_, batch_);
}

uint32_t RingLoopback::completeAll(int64_t len) {
  uint32_t n = 0;
  while (device_->pop(chain_) == DeviceQueue::Pop::kChain) {
    device_->push(chain_.head, len < 0 ? static_cast<uint32_t>(chain_.writableBytes) : static_cast<uint32_t>(len));
    n++;
  }
  return n;
}

size_t RingLoopback::drainCompletions() {
  const size_t n = driver_->drain(completions_.data(), completions_.capacity());
  completions_.publish(Value());
  return n;
}

#define LOOPBACK_METHOD(Name, ...)                                 \
  Napi::Value RingLoopback::Name(const Napi::CallbackInfo& info) { \
    return guarded(info, [&]() -> Napi::Value {                    \
      Napi::Env env = info.Env();                                  \
      requireTag(env, info.This(), kTag, "RingLoopback");          \
      __VA_ARGS__                                                  \
    });                                                            \
  }

LOOPBACK_METHOD(Submit, {
  auto batch = uint32ArrayArg(info, 0, "batch");
  return Napi::Number::New(env, submitBatch(env, batch.Data(), batch.ElementLength(), u32Arg(info, 1, "count")));
})

LOOPBACK_METHOD(Publish, { return Napi::Boolean::New(env, driver_->publish()); })

// Pops one chain; returns undefined when empty, or a description of the chain (or the malformed reason).
LOOPBACK_METHOD(DevicePop, {
  const auto r = device_->pop(chain_);
  if (r == DeviceQueue::Pop::kEmpty) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  if (r == DeviceQueue::Pop::kMalformed) {
    o.Set("error", device_->error());
    return o;
  }
  o.Set("head", chain_.head);
  auto list = [&](const std::vector<DeviceBuffer>& bufs) {
    Napi::Array a = Napi::Array::New(env, bufs.size());
    for (uint32_t i = 0; i < bufs.size(); i++) {
      Napi::Object b = Napi::Object::New(env);
      b.Set("offset", static_cast<double>(bufs[i].data - data_->data()));
      b.Set("length", bufs[i].len);
      a.Set(i, b);
    }
    return a;
  };
  o.Set("readable", list(chain_.readable));
  o.Set("writable", list(chain_.writable));
  return o;
})

LOOPBACK_METHOD(DeviceCompleteAll, {
  const int64_t len = info[0].IsUndefined() ? int64_t{-1} : int64_t{u32Arg(info, 0, "len")};
  return Napi::Number::New(env, completeAll(len));
})

LOOPBACK_METHOD(DevicePush, {
  device_->push(u32Arg(info, 0, "id"), u32Arg(info, 1, "len"));
  return env.Undefined();
})

LOOPBACK_METHOD(DevicePublish, { return Napi::Boolean::New(env, device_->publish()); })
LOOPBACK_METHOD(DeviceEnableNotify, { return Napi::Boolean::New(env, device_->enableNotifications()); })

LOOPBACK_METHOD(DeviceJumpUsedIdx, {
  device_->corruptUsedIdx(static_cast<uint16_t>(u32Arg(info, 0, "delta", 0, 0xffff)));
  return env.Undefined();
})

LOOPBACK_METHOD(Drain, { return Napi::Number::New(env, static_cast<double>(drainCompletions())); })
LOOPBACK_METHOD(EnableInterrupts, { return Napi::Boolean::New(env, driver_->enableInterrupts()); })

LOOPBACK_METHOD(State, {
  Napi::Object o = Napi::Object::New(env);
  o.Set("broken", driver_->broken());
  o.Set("reason", driver_->brokenReason());
  o.Set("inFlight", driver_->inFlight());
  o.Set("freeDescriptors", split_ ? split_->freeDescriptors() : packed_->freeDescriptors());
  return o;
})

LOOPBACK_METHOD(Abandon, {
  auto tokens = driver_->abandonInFlight();
  auto out = Napi::Uint32Array::New(env, tokens.size());
  if (!tokens.empty()) std::memcpy(out.Data(), tokens.data(), tokens.size() * 4);
  return out;
})

// Writes raw descriptor fields, as a hostile or buggy driver would (device-side robustness tests).
// The fifth argument is `next` on a split ring and the buffer id on a packed one, whose flags
// (including AVAIL/USED) are stored last, with release, like a driver making a descriptor available.
LOOPBACK_METHOD(PokeDescriptor, {
  const uint32_t index = u32Arg(info, 0, "index", 0, driver_->size() - 1u);
  const uint64_t addr = u64BigIntArg(info, 1, "addr");
  const uint32_t len = u32Arg(info, 2, "len");
  const auto flags = static_cast<uint16_t>(u32Arg(info, 3, "flags", 0, 0xffff));
  const auto last = static_cast<uint16_t>(u32Arg(info, 4, packed_ ? "id" : "next", 0, 0xffff));
  if (packed_) {
    auto* d = reinterpret_cast<PackedDesc*>(ringMem_->data()) + index;
    d->addr = addr;
    d->len = len;
    d->id = last;
    storeRelease(&d->flags, flags);
  } else {
    auto* d = reinterpret_cast<VringDesc*>(ringMem_->data()) + index;
    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = last;
  }
  return env.Undefined();
})

// Reads a descriptor as it is in ring memory: {addr, len, flags, next} (split) or {addr, len, flags, id}.
LOOPBACK_METHOD(PeekDescriptor, {
  const uint32_t index = u32Arg(info, 0, "index", 0, driver_->size() - 1u);
  Napi::Object o = Napi::Object::New(env);
  if (packed_) {
    const auto* d = reinterpret_cast<const PackedDesc*>(ringMem_->data()) + index;
    o.Set("addr", Napi::BigInt::New(env, static_cast<uint64_t>(d->addr)));
    o.Set("len", d->len);
    o.Set("flags", d->flags);
    o.Set("id", d->id);
  } else {
    const auto* d = reinterpret_cast<const VringDesc*>(ringMem_->data()) + index;
    o.Set("addr", Napi::BigInt::New(env, static_cast<uint64_t>(d->addr)));
    o.Set("len", d->len);
    o.Set("flags", d->flags);
    o.Set("next", d->next);
  }
  return o;
})

// Appends `head` to the avail ring and moves avail->idx by `advance` (normally 1). Split rings only.
LOOPBACK_METHOD(PokeAvail, {
  if (packed_)
    throwRangeError(env, "pokeAvail is for split rings; packed descriptors are made available by their flags");
  const uint16_t num = driver_->size();
  auto* avail = reinterpret_cast<uint16_t*>(ringMem_->data() + SplitRingLayout::forSize(num).availOffset);
  const uint16_t idx = avail[1];
  const auto head = static_cast<uint16_t>(u32Arg(info, 0, "head", 0, 0xffff));
  const auto advance = static_cast<uint16_t>(u32Arg(info, 1, "advance", 0, 0xffff));
  avail[2 + (idx & (num - 1))] = head;
  storeRelease(&avail[1], static_cast<uint16_t>(idx + advance));
  return env.Undefined();
})

// Packed rings: both event suppression structures, {driver: {flags, off, wrap}, device: {...}}.
LOOPBACK_METHOD(EventSuppression, {
  if (!packed_) throwRangeError(env, "event suppression structures exist on packed rings only");
  const PackedRingLayout l = PackedRingLayout::forSize(driver_->size());
  auto side = [&](size_t offset) {
    const uint32_t v = loadEvent(reinterpret_cast<const uint32_t*>(ringMem_->data() + offset));
    Napi::Object o = Napi::Object::New(env);
    o.Set("flags", eventFlags(v));
    o.Set("off", eventOffWrap(v) & 0x7fff);
    o.Set("wrap", (eventOffWrap(v) >> 15) != 0);
    return o;
  };
  Napi::Object o = Napi::Object::New(env);
  o.Set("driver", side(l.driverOffset));
  o.Set("device", side(l.deviceOffset));
  return o;
})

// Packed rings: overwrites one event suppression structure (driverSide, flags, offWrap).
LOOPBACK_METHOD(PokeEventSuppression, {
  if (!packed_) throwRangeError(env, "event suppression structures exist on packed rings only");
  const PackedRingLayout l = PackedRingLayout::forSize(driver_->size());
  const bool driverSide = boolArg(info, 0, "driverSide");
  const auto flags = static_cast<uint16_t>(u32Arg(info, 1, "flags", 0, 0xffff));
  const auto offWrap = static_cast<uint16_t>(u32Arg(info, 2, "offWrap", 0, 0xffff));
  auto* p = reinterpret_cast<uint32_t*>(ringMem_->data() + (driverSide ? l.driverOffset : l.deviceOffset));
  storeEvent(p, packEvent(flags, offWrap));
  return env.Undefined();
})

// One N-API call per batch: submit, let the device side answer every chain, drain into `completions`.
// Returns the number of completions (the ring benchmark's batch path).
LOOPBACK_METHOD(RoundTrip, {
  auto batch = uint32ArrayArg(info, 0, "batch");
  submitBatch(env, batch.Data(), batch.ElementLength(), u32Arg(info, 1, "count"));
  driver_->publish();
  completeAll(-1);
  device_->publish();
  return Napi::Number::New(env, static_cast<double>(drainCompletions()));
})

// The ring benchmark's limit: `iterations` rounds of `batch` one-segment chains submitted, consumed
// by the device side, and drained, all in C++. Returns nanoseconds.
LOOPBACK_METHOD(RunNative, {
  const uint32_t iterations = u32Arg(info, 0, "iterations");
  const uint32_t batch = u32Arg(info, 1, "batch", 1, driver_->size());
  std::vector<uint32_t> words;
  for (uint32_t i = 0; i < batch; i++) words.insert(words.end(), {i, 1, 1, (i * 64) % 4096, 64, 1});
  const auto t0 = std::chrono::steady_clock::now();
  for (uint32_t it = 0; it < iterations; it++) {
    const uint32_t added = submitBatch(env, words.data(), words.size(), batch);
    driver_->publish();
    completeAll(-1);
    device_->publish();
    uint32_t got = 0;
    while (got < added) got += static_cast<uint32_t>(driver_->drain(completions_.data(), completions_.capacity()));
  }
  const auto t1 = std::chrono::steady_clock::now();
  return Napi::Number::New(env, static_cast<double>(std::chrono::nanoseconds(t1 - t0).count()));
})

}  // namespace vdpa
