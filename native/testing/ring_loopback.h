// RingLoopback: a driver-side and a device-side ring (split, or packed when the constructor's fifth
// argument is true) sharing one region in this process, with no transport and no threads. Ring tests use it to play a
// misbehaving device step by step; the ring benchmark uses it to time the N-API batch path against the same loop in
// pure C++.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "memory/memory_region.h"
#include "napi/batch.h"
#include "napi/completions.h"
#include "ring/device_queue.h"
#include "ring/packed_device_queue.h"
#include "ring/packed_driver_queue.h"
#include "ring/split_device_queue.h"
#include "ring/split_driver_queue.h"

namespace vdpa {

class RingLoopback : public Napi::ObjectWrap<RingLoopback>, private GuestMemory {
 public:
  static Napi::Function define(Napi::Env env);
  static const napi_type_tag kTag;
  explicit RingLoopback(const Napi::CallbackInfo& info);

 private:
  uint8_t* translate(uint64_t iova, uint64_t len) override;

  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Publish(const Napi::CallbackInfo& info);
  Napi::Value DevicePop(const Napi::CallbackInfo& info);
  Napi::Value DeviceCompleteAll(const Napi::CallbackInfo& info);
  Napi::Value DevicePush(const Napi::CallbackInfo& info);
  Napi::Value DevicePublish(const Napi::CallbackInfo& info);
  Napi::Value DeviceEnableNotify(const Napi::CallbackInfo& info);
  Napi::Value DeviceJumpUsedIdx(const Napi::CallbackInfo& info);
  Napi::Value Drain(const Napi::CallbackInfo& info);
  Napi::Value EnableInterrupts(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value Abandon(const Napi::CallbackInfo& info);
  Napi::Value RunNative(const Napi::CallbackInfo& info);
  Napi::Value RoundTrip(const Napi::CallbackInfo& info);
  Napi::Value PokeDescriptor(const Napi::CallbackInfo& info);
  Napi::Value PokeAvail(const Napi::CallbackInfo& info);
  Napi::Value PeekDescriptor(const Napi::CallbackInfo& info);
  Napi::Value EventSuppression(const Napi::CallbackInfo& info);
  Napi::Value PokeEventSuppression(const Napi::CallbackInfo& info);

  // Adds chains from a batch in the queue's layout; region handle 1 names the data area.
  uint32_t submitBatch(Napi::Env env, const uint32_t* words, size_t nwords, uint32_t chains);
  // Device side: pop everything, answer each chain with `len` bytes (or its writable size).
  uint32_t completeAll(int64_t len);
  // drain() into `completions`, published for JS to read.
  size_t drainCompletions();

  static constexpr uint64_t kRingIova = 0x100000;
  static constexpr uint64_t kDataIova = 0x40000000;
  std::unique_ptr<MemoryRegion> ringMem_;
  std::shared_ptr<MemoryRegion> data_;  // shared with the `data` ArrayBuffer, which may outlive us
  std::unique_ptr<DriverQueue> driver_;
  std::unique_ptr<DeviceQueue> device_;
  SplitDriverQueue* split_ = nullptr;    // driver_ when split
  PackedDriverQueue* packed_ = nullptr;  // driver_ when packed
  DecodedBatch batch_;
  DeviceChain chain_;
  CompletionArray completions_;
};

}  // namespace vdpa
