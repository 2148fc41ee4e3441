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
//
// Blocking receive (the dedicated-thread mode): after setBlockingReceive(buf,
// fdsOut), a callback that returns true makes the Poller stay in its libuv
// callback and wait for the next message in a blocking recvmsg on the fd
// (which it switches to blocking mode; every other receive and send of the
// addon passes MSG_DONTWAIT), calling the JS callback with RECEIVED and the
// byte count once per receive: two syscalls per request (recvmsg, and the
// reply's sendmsg) instead of epoll_wait + recvmsg + sendmsg. Each call is a
// MakeCallback, so promises and nextTicks still run after every message. A
// LoopWatcher interrupts the wait when the loop has work (a timer is due, an
// fd or async handle of the loop is ready); the Poller then restarts its
// uv_poll and returns to the loop, and blocks again after the next message.
#include <fcntl.h>
#include <sys/socket.h>
#include <uv.h>

#include <cerrno>
#include <memory>
#include <system_error>

#include "common.h"
#include "loop-watcher.h"

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
                           InstanceMethod<&Poller::SetBlockingReceive>("setBlockingReceive"),
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
    fd_ = fd;
    loop_ = loop;
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
    pevents_ = events;
    // Inside the blocking loop the handle stays stopped; it is restarted
    // with these events when the loop is left.
    int r = inBlock_ ? 0 : uv_poll_start(handle_, events, OnPoll);
    if (r < 0) ThrowErrno(info.Env(), -r, "uv_poll_start");
    if (!strong_) {
      Ref();
      strong_ = true;
    }
  }

  void Stop(const Napi::CallbackInfo&) {
    pevents_ = 0;
    if (handle_ != nullptr) uv_poll_stop(handle_);
    Weaken();
  }

  // setBlockingReceive(buf: Uint8Array, fdsOut: Int32Array) | (null): turns
  // the blocking receive on (into buf, fds as recvmsg's fdsOut) or off.
  void SetBlockingReceive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info[0].IsNull() || info[0].IsUndefined()) {
      blocking_ = false;
      bufRef_.Reset();
      fdsRef_.Reset();
      if (!inBlock_) watcher_.reset();
      return;
    }
    if (handle_ == nullptr) ThrowErrno(env, EBADF, "setBlockingReceive");
    Bytes b = ArgUint8Array(info, 0, "buf");
    napi_typedarray_type type;
    size_t len = 0;
    void* data = nullptr;
    bool isTa = false;
    if (napi_is_typedarray(env, info[1], &isTa) != napi_ok || !isTa ||
        napi_get_typedarray_info(env, info[1], &type, &len, &data, nullptr, nullptr) != napi_ok ||
        type != napi_int32_array || len < 2) {
      ThrowType(env, "fdsOut must be an Int32Array of length >= 2");
    }
    if (b.length == 0) ThrowRange(env, "buf must not be empty");
    if (!watcher_) {
      try {
        watcher_ = std::make_unique<LoopWatcher>(loop_);
      } catch (const std::system_error& e) {
        ThrowErrno(env, e.code().value(), "LoopWatcher");
      }
    }
    // The buffers are held here, so their memory stays put while blocking is on.
    bufRef_ = Napi::Persistent(info[0]);
    fdsRef_ = Napi::Persistent(info[1]);
    buf_ = b.data;
    bufLen_ = b.length;
    fds_ = static_cast<int32_t*>(data);
    maxFds_ = len - 2;
    blocking_ = true;
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
    // The watcher's thread and eventfd go with the handle (not with the JS
    // object, which may live on); inside the blocking loop they are still in
    // use, so the loop drops them when it ends.
    if (!inBlock_) watcher_.reset();
    if (keep_ != nullptr) {
      uv_prepare_t* k = keep_;
      keep_ = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(k), [](uv_handle_t* x) { delete reinterpret_cast<uv_prepare_t*>(x); });
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

  // Calls the JS callback (status, events, received) with MakeCallback
  // semantics; true when it returned true (asks for a blocking receive).
  bool CallJs(napi_value recv, int status, int events, double received) {
    napi_env env = env_;
    if (cb_.IsEmpty()) return false;
    napi_value cb = cb_.Value();
    napi_value argv[3];
    napi_create_int32(env, status, &argv[0]);
    napi_create_int32(env, events, &argv[1]);
    napi_create_double(env, received, &argv[2]);
    napi_value result;
    napi_status st = napi_make_callback(env, async_, recv, cb, 3, argv, &result);
    if (st != napi_ok) {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value exc;
        if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
      }
      return false;
    }
    bool keep = false;
    return napi_get_value_bool(env, result, &keep) == napi_ok && keep;
  }

  // The blocking receive loop (see the file comment). Runs inside OnPoll.
  void BlockLoop(napi_value recv) {
    if (!fdBlocking_) {
      int fl = ::fcntl(fd_, F_GETFL);
      if (fl < 0 || ::fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK) < 0) return;
      fdBlocking_ = true;
    }
    inBlock_ = true;
    // The fd leaves the loop's epoll set (uv_poll_stop removes it at once),
    // so its traffic does not wake the watcher; a prepare handle keeps the
    // loop's "active handles" count, which uv_backend_timeout looks at.
    uv_poll_stop(handle_);
    if (keep_ == nullptr) {
      keep_ = new uv_prepare_t;
      uv_prepare_init(loop_, keep_);
      keep_->data = nullptr;
    }
    uv_prepare_start(keep_, [](uv_prepare_t*) {});
    uv_update_time(loop_);
    watcher_->Arm();
    while (handle_ != nullptr && blocking_) {
      watcher_->EnterBlocked();
      if (watcher_->due()) {
        watcher_->LeaveBlocked();
        break;
      }
      ssize_t n = RecvWithFds(fd_, iovec{buf_, bufLen_}, fds_, maxFds_, 0);
      int err = errno;
      watcher_->LeaveBlocked();
      if (n < 0 && err == EINTR) continue;  // the watcher, or another signal: check due()
      if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) break;
      uv_update_time(loop_);  // timers the callback sets count from now
      bool more = n < 0 ? CallJs(recv, -err, 0, -1) : CallJs(recv, 0, kReceived | UV_READABLE, static_cast<double>(n));
      if (!more || !watcher_->Refresh()) break;
    }
    watcher_->Disarm();
    inBlock_ = false;
    if (handle_ == nullptr) watcher_.reset();  // closed from inside the loop
    if (keep_ != nullptr) uv_prepare_stop(keep_);
    if (handle_ != nullptr && pevents_ != 0) uv_poll_start(handle_, pevents_, OnPoll);
  }

  static constexpr int kReceived = 0x100;

  static void OnPoll(uv_poll_t* h, int status, int events) {
    Poller* self = static_cast<Poller*>(h->data);
    if (self == nullptr) return;
    napi_env env = self->env_;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value recv = self->Value();  // keeps self alive for this scope
    bool block = self->CallJs(recv, status, events, -1);
    if (block && self->blocking_ && !self->inBlock_ && self->handle_ != nullptr) self->BlockLoop(recv);
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
  uv_loop_t* loop_ = nullptr;
  int fd_ = -1;
  uv_poll_t* handle_ = nullptr;
  // JS-requested poll events (restored when the blocking loop is left).
  int pevents_ = 0;
  bool blocking_ = false;
  bool inBlock_ = false;
  bool fdBlocking_ = false;
  uv_prepare_t* keep_ = nullptr;
  std::unique_ptr<LoopWatcher> watcher_;
  Napi::Reference<Napi::Value> bufRef_;
  Napi::Reference<Napi::Value> fdsRef_;
  uint8_t* buf_ = nullptr;
  size_t bufLen_ = 0;
  int32_t* fds_ = nullptr;
  size_t maxFds_ = 0;
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
  exports.Set("RECEIVED", Napi::Number::New(env, 0x100));
}

}  // namespace vun
