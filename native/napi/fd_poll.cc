#include "napi/fd_poll.h"

#include "common/sys_error.h"

namespace vdpa {

FdPoll* FdPoll::start(napi_env env, int fd, Callback cb, void* owner) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) throwSys(EINVAL, "napi_get_uv_event_loop");
  auto* p = new FdPoll();
  p->cb_ = cb;
  p->owner_ = owner;
  int r = uv_poll_init(loop, &p->handle_, fd);
  if (r != 0) {
    delete p;
    throwSys(-r, "uv_poll_init");
  }
  p->handle_.data = p;
  uv_unref(reinterpret_cast<uv_handle_t*>(&p->handle_));
  uv_poll_start(&p->handle_, UV_READABLE, onPoll);
  napi_add_async_cleanup_hook(env, onEnvCleanup, p, &p->hook_);
  return p;
}

void FdPoll::onPoll(uv_poll_t* h, int, int) {
  auto* p = static_cast<FdPoll*>(h->data);
  if (p->owner_ && !p->closing_) p->cb_(p->owner_);
}

void FdPoll::close() {
  if (closing_) return;
  closing_ = true;
  uv_poll_stop(&handle_);
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_), onClose);
}

void FdPoll::release() {
  owner_ = nullptr;
  close();
  if (closed_) delete this;
}

void FdPoll::onClose(uv_handle_t* h) {
  auto* p = static_cast<FdPoll*>(h->data);
  p->closed_ = true;
  if (p->hook_) {
    napi_remove_async_cleanup_hook(p->hook_);
    p->hook_ = nullptr;
  }
  if (!p->owner_) delete p;
}

void FdPoll::onEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
  // The environment is going away: close now; the owner's release() frees us later (or already did).
  static_cast<FdPoll*>(arg)->close();
}

}  // namespace vdpa
