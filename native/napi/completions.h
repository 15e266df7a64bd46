// The [token, len] pairs native code drains completions into, seen by JS as `owner.completions` (a
// Uint32Array). The memory is native and every ArrayBuffer over it shares its ownership, so whatever
// JS does with the buffer (transfers or detaches it) the memory a drain writes stays valid; when the
// published array was detached, publish() puts a fresh one over the same memory on the owner.
#pragma once

#include <napi.h>

#include <memory>

#include "ring/driver_queue.h"

namespace vdpa {

class CompletionArray {
 public:
  // Allocates room for `capacity` completions and publishes them as `owner.completions`.
  void init(Napi::Object owner, size_t capacity);
  Completion* data() const { return mem_.get(); }
  size_t capacity() const { return capacity_; }
  // Makes `owner.completions` a live view of the memory again if JS detached it. Call before JS
  // reads what a drain wrote.
  void publish(Napi::Object owner);

 private:
  void publishNew(Napi::Object owner);

  std::shared_ptr<Completion[]> mem_;
  size_t capacity_ = 0;
  Napi::Reference<Napi::Uint32Array> array_;  // the view last published
};

}  // namespace vdpa
