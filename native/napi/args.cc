#include "napi/args.h"

#include "napi/errors.h"

namespace vdpa {

namespace {
[[noreturn]] void wrongKind(const Napi::CallbackInfo& info, const char* name, const char* kind) {
  throwTypeError(info.Env(), std::string(name) + " must be " + kind);
}
}  // namespace

uint64_t integerArg(const Napi::CallbackInfo& info, size_t i, const char* name, uint64_t min, uint64_t max) {
  if (!info[i].IsNumber()) wrongKind(info, name, "a number");
  const double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) ||
      d != static_cast<double>(static_cast<uint64_t>(d)))
    throwRangeError(info.Env(), std::string(name) + " must be an integer from " + std::to_string(min) + " to " +
                                    std::to_string(max));
  return static_cast<uint64_t>(d);
}

uint64_t u64BigIntArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBigInt()) wrongKind(info, name, "a bigint");
  bool lossless = true;
  const uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throwRangeError(info.Env(), std::string(name) + " must fit in 64 unsigned bits");
  return v;
}

bool boolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBoolean()) wrongKind(info, name, "a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

std::string stringArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) wrongKind(info, name, "a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Object objectArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsObject()) wrongKind(info, name, "an object");
  return info[i].As<Napi::Object>();
}

Napi::Function functionArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsFunction()) wrongKind(info, name, "a function");
  return info[i].As<Napi::Function>();
}

Napi::Uint8Array uint8ArrayArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    wrongKind(info, name, "a Uint8Array");
  return info[i].As<Napi::Uint8Array>();
}

Napi::Uint32Array uint32ArrayArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    wrongKind(info, name, "a Uint32Array");
  return info[i].As<Napi::Uint32Array>();
}

void requireTag(const Napi::Env& env, const Napi::Value& v, const napi_type_tag& tag, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&tag))
    throwTypeError(env, std::string("expected a native ") + what + " object");
}

}  // namespace vdpa
