// benchMockBlk: the C++ mock:blk loop, checked and exported for the blk benchmark.
#include "napi/args.h"
#include "napi/errors.h"
#include "testing/blk_loop.h"
#include "testing/testing_addon.h"

namespace vdpa {

namespace {

// benchMockBlk(depth, ops, write, capacity) -> {ops, nanoseconds}
Napi::Value BenchMockBlk(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const uint32_t depth = u32Arg(info, 0, "depth", 1, kBlkLoopQueueSize);
    const uint32_t ops = u32Arg(info, 1, "ops");
    const bool write = boolArg(info, 2, "write");
    // mock:blk checks the rest of what it accepts (a multiple of 512, its upper bound).
    const uint64_t capacity = integerArg(info, 3, "capacity", kBlkLoopBlock, uint64_t{1} << 50);
    const BlkLoopResult r = runMockBlkLoop(depth, ops, write, capacity);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("ops", static_cast<double>(r.ops));
    o.Set("nanoseconds", static_cast<double>(r.nanoseconds));
    return o;
  });
}

}  // namespace

void registerBlkLoop(Napi::Env env, Napi::Object exports) {
  exports.Set("benchMockBlk", Napi::Function::New(env, BenchMockBlk, "benchMockBlk"));
}

}  // namespace vdpa
