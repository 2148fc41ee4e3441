// Poller: a uv_poll_t on the Node event loop of the calling thread (main or
// worker), calling a JS function with MakeCallback semantics.
//
// Lifetime:
//  - The uv handle is heap-allocated and freed in its uv_close callback, never
//    together with the JS object.
//  - close() stops and closes the handle; it is idempotent and may be called
//    from inside the callback; the callback is never invoked after close().
//  - While started, the JS object is held strongly (like an active net.Socket)
//    so a running watcher is not silently collected; stop()/close() (or a poll
//    error, which stops libuv's watcher) make it weak again. A Poller that is
//    collected while open is closed by its finalizer.
//  - An env cleanup hook closes the handle when the thread's environment is torn
//    down (worker exit), so the worker's loop can close.
//  - unref() follows uv_unref: a started but unref'd Poller does not keep the
//    event loop alive; nor does a stopped or closed one.
#include <uv.h>

#include "common.h"

namespace vun {
namespace {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {
                           InstanceMethod<&Poller::Start>("start"),
                           InstanceMethod<&Poller::Stop>("stop"),
                           InstanceMethod<&Poller::Close>("close"),
                           InstanceMethod<&Poller::JsRef>("ref"),
                           InstanceMethod<&Poller::JsUnref>("unref"),
                       });
  }

  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    int fd = ArgFd(info, 0);
    if (!info[1].IsFunction()) ThrowType(env, "callback must be a function");
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      throw Napi::Error::New(env, "Poller: no libuv loop for this environment");
    }
    uv_poll_t* h = new uv_poll_t;
    int r = uv_poll_init(loop, h, fd);
    if (r < 0) {
      delete h;
      ThrowErrno(env, -r, "uv_poll_init");
    }
    h->data = nullptr;
    napi_value name = Napi::String::New(env, "VfioUserPoller");
    if (napi_async_init(env, nullptr, name, &async_) != napi_ok) {
      uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete reinterpret_cast<uv_poll_t*>(x); });
      throw Napi::Error::New(env, "Poller: napi_async_init failed");
    }
    h->data = this;
    handle_ = h;
    cb_ = Napi::Persistent(info[1].As<Napi::Function>());
    if (napi_add_env_cleanup_hook(env, OnEnvCleanup, this) == napi_ok) hook_ = true;
  }

  ~Poller() override {
    CloseHandle();
    if (async_ != nullptr) napi_async_destroy(env_, async_);
  }

 private:
  void Start(const Napi::CallbackInfo& info) {
    int events = static_cast<int>(ArgInt(info, 0, 0, UV_READABLE | UV_WRITABLE | UV_DISCONNECT, "events"));
    if (handle_ == nullptr) ThrowErrno(info.Env(), EBADF, "uv_poll_start");
    int r = uv_poll_start(handle_, events, OnPoll);
    if (r < 0) ThrowErrno(info.Env(), -r, "uv_poll_start");
    if (!strong_) {
      Ref();
      strong_ = true;
    }
  }

  void Stop(const Napi::CallbackInfo&) {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    Weaken();
  }

  void Close(const Napi::CallbackInfo&) {
    CloseHandle();
    Weaken();
    // The callback is never called again. It usually closes over the object
    // that owns this Poller, so keeping it in a persistent (a GC root) would
    // keep both alive forever: release it.
    cb_.Reset();
  }

  void JsRef(const Napi::CallbackInfo&) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
  }

  void JsUnref(const Napi::CallbackInfo&) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
  }

  void Weaken() {
    if (strong_) {
      strong_ = false;
      Unref();
    }
  }

  // uv side only: safe from the finalizer and the env cleanup hook.
  void CloseHandle() {
    if (hook_) {
      hook_ = false;
      napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
    }
    if (handle_ == nullptr) return;
    uv_poll_t* h = handle_;
    handle_ = nullptr;
    uv_poll_stop(h);
    h->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete reinterpret_cast<uv_poll_t*>(x); });
  }

  static void OnEnvCleanup(void* arg) {
    Poller* self = static_cast<Poller*>(arg);
    self->hook_ = false;  // already removed by the runtime
    self->CloseHandle();
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    Poller* self = static_cast<Poller*>(h->data);
    if (self == nullptr) return;
    napi_env env = self->env_;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value recv = self->Value();  // keeps self alive for this scope
    napi_value cb = self->cb_.Value();
    napi_value argv[2];
    napi_create_int32(env, status, &argv[0]);
    napi_create_int32(env, events, &argv[1]);
    napi_value result;
    napi_status st = napi_make_callback(env, self->async_, recv, cb, 2, argv, &result);
    if (st != napi_ok) {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value exc;
        if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
      }
    }
    // A poll error stops libuv's watcher: drop the strong reference with it.
    if (self->strong_ && (self->handle_ == nullptr || !uv_is_active(reinterpret_cast<uv_handle_t*>(self->handle_)))) {
      try {
        self->Weaken();
      } catch (...) {
      }
    }
    napi_close_handle_scope(env, scope);
  }

  napi_env env_;
  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference cb_;
  napi_async_context async_ = nullptr;
  bool strong_ = false;
  bool hook_ = false;
};

}  // namespace

void InitPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("Poller", Poller::Define(env));
  exports.Set("READABLE", Napi::Number::New(env, UV_READABLE));
  exports.Set("WRITABLE", Napi::Number::New(env, UV_WRITABLE));
  exports.Set("DISCONNECT", Napi::Number::New(env, UV_DISCONNECT));
}

}  // namespace vun
