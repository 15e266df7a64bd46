// needEvent: the ring code's event-index rule, exported so ring tests can check it against a model.
#include "napi/args.h"
#include "napi/errors.h"
#include "ring/virtio_ring.h"
#include "testing/testing_addon.h"

namespace vdpa {

namespace {

// needEvent(event, newIdx, oldIdx): whether moving from oldIdx to newIdx passes event.
Napi::Value NeedEvent(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const auto event = static_cast<uint16_t>(u32Arg(info, 0, "event", 0, 0xffff));
    const auto newIdx = static_cast<uint16_t>(u32Arg(info, 1, "newIdx", 0, 0xffff));
    const auto oldIdx = static_cast<uint16_t>(u32Arg(info, 2, "oldIdx", 0, 0xffff));
    return Napi::Boolean::New(info.Env(), vringNeedEvent(event, newIdx, oldIdx));
  });
}

}  // namespace

void registerRingRules(Napi::Env env, Napi::Object exports) {
  exports.Set("needEvent", Napi::Function::New(env, NeedEvent, "needEvent"));
}

}  // namespace vdpa
