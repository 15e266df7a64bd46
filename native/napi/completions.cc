#include "napi/completions.h"

namespace vdpa {

void CompletionArray::init(Napi::Object owner, size_t capacity) {
  capacity_ = capacity;
  mem_.reset(new Completion[capacity]());
  publishNew(owner);
}

void CompletionArray::publish(Napi::Object owner) {
  if (array_.IsEmpty() || array_.Value().IsEmpty() || array_.Value().ArrayBuffer().IsDetached()) publishNew(owner);
}

void CompletionArray::publishNew(Napi::Object owner) {
  Napi::Env env = owner.Env();
  // The buffer's own reference keeps the memory alive for as long as any JS view of it exists.
  auto* keep = new std::shared_ptr<Completion[]>(mem_);
  auto buffer = Napi::ArrayBuffer::New(
      env, mem_.get(), capacity_ * sizeof(Completion),
      [](Napi::Env, void*, std::shared_ptr<Completion[]>* hint) { delete hint; }, keep);
  auto array = Napi::Uint32Array::New(env, 2 * capacity_, buffer, 0);
  array_ = Napi::Persistent(array);
  owner.Set("completions", array);
}

}  // namespace vdpa
