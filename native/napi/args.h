// The N-API layer's one argument-check vocabulary: a value of the wrong kind is a TypeError, a value
// of the right kind out of range (or not an integer) a RangeError. Messages name the argument.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace vdpa {

// An integer number in [min, max] (max at most 2^53, the largest exact double).
uint64_t integerArg(const Napi::CallbackInfo& info, size_t i, const char* name, uint64_t min, uint64_t max);
// integerArg for the common 32-bit case.
inline uint32_t u32Arg(const Napi::CallbackInfo& info, size_t i, const char* name, uint32_t min = 0,
                       uint32_t max = UINT32_MAX) {
  return static_cast<uint32_t>(integerArg(info, i, name, min, max));
}
// A bigint that fits in 64 unsigned bits.
uint64_t u64BigIntArg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool boolArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string stringArg(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Object objectArg(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Function functionArg(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Uint8Array uint8ArrayArg(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Uint32Array uint32ArrayArg(const Napi::CallbackInfo& info, size_t i, const char* name);

// Rejects a receiver or argument that is not the native object it claims to be.
void requireTag(const Napi::Env& env, const Napi::Value& v, const napi_type_tag& tag, const char* what);

}  // namespace vdpa
