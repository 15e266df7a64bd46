#include "napi/management_binding.h"

#include <cstring>
#include <optional>
#include <vector>

#include "management/netlink_socket.h"
#include "napi/errors.h"

namespace vdpa {

namespace {

// One netlink request on the threadpool; settles its Promise back on the JS thread.
class TransactWorker : public Napi::AsyncWorker {
 public:
  TransactWorker(Napi::Env env, std::vector<uint8_t> request, int timeoutMs)
      : Napi::AsyncWorker(env, "vdpa:netlinkTransact"),
        deferred_(Napi::Promise::Deferred::New(env)),
        request_(std::move(request)),
        timeoutMs_(timeoutMs) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    // Caught here, not by AsyncWorker: the Promise must reject with a VdpaError, not a plain Error.
    try {
      replies_ = netlinkTransact(request_, timeoutMs_);
    } catch (const SysError& e) {
      sysError_.emplace(e);
    } catch (const ArgError& e) {
      argError_ = e.what();
    } catch (const std::exception& e) {
      sysError_.emplace(EIO, "netlink", "", std::string("EIO: ") + e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (sysError_) {
      deferred_.Reject(makeVdpaError(env, *sysError_).Value());
      return;
    }
    if (!argError_.empty()) {
      deferred_.Reject(Napi::RangeError::New(env, argError_).Value());
      return;
    }
    Napi::Array out = Napi::Array::New(env, replies_.size());
    for (uint32_t i = 0; i < replies_.size(); i++) {
      Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, replies_[i].size());
      std::memcpy(buf.Data(), replies_[i].data(), replies_[i].size());
      out.Set(i, Napi::Uint8Array::New(env, replies_[i].size(), buf, 0));
    }
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> request_;
  int timeoutMs_;
  std::vector<NetlinkMessage> replies_;
  std::optional<SysError> sysError_;
  std::string argError_;
};

Napi::Value NetlinkTransact(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throwTypeError(env, "netlink request must be a Uint8Array");
    if (!info[1].IsNumber()) throwTypeError(env, "timeoutMs must be a number");
    Napi::Uint8Array req = info[0].As<Napi::Uint8Array>();
    std::vector<uint8_t> bytes(req.Data(), req.Data() + req.ByteLength());
    auto* worker = new TransactWorker(env, std::move(bytes), info[1].As<Napi::Number>().Int32Value());
    Napi::Promise p = worker->promise();
    worker->Queue();  // owned by the AsyncWorker machinery from here on
    return p;
  });
}

}  // namespace

void registerManagement(Napi::Env env, Napi::Object exports) {
  exports.Set("netlinkTransact", Napi::Function::New(env, NetlinkTransact, "netlinkTransact"));
}

}  // namespace vdpa
