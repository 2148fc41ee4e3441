// eventfd(2). Always EFD_CLOEXEC. The JS flag values are this addon's own:
// EFD_NONBLOCK = 1, EFD_SEMAPHORE = 2 (mapped to the kernel's bits here).
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "common.h"

namespace vun {
namespace {

constexpr int kJsNonblock = 1;
constexpr int kJsSemaphore = 2;

Napi::Value Eventfd(const Napi::CallbackInfo& info) {
  unsigned int init = static_cast<unsigned int>(ArgInt(info, 0, 0, UINT32_MAX, "initval"));
  int jsFlags = static_cast<int>(ArgInt(info, 1, 0, kJsNonblock | kJsSemaphore, "flags"));
  int flags = EFD_CLOEXEC;
  if (jsFlags & kJsNonblock) flags |= EFD_NONBLOCK;
  if (jsFlags & kJsSemaphore) flags |= EFD_SEMAPHORE;
  int fd = ::eventfd(init, flags);
  if (fd < 0) ThrowErrno(info.Env(), errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// eventfdRead(fd): the counter (or 1 in semaphore mode) as a bigint; -1n on EAGAIN.
Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t v = 0;
  ssize_t n;
  do {
    n = ::read(fd, &v, sizeof v);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::BigInt::New(info.Env(), static_cast<int64_t>(-1));
    ThrowErrno(info.Env(), errno, "read");
  }
  if (n != sizeof v) ThrowErrno(info.Env(), EIO, "read");
  return Napi::BigInt::New(info.Env(), v);
}

// eventfdWrite(fd, value): adds value (< 2^64-1); false on EAGAIN (overflow
// would block on a non-blocking eventfd).
Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t v = ArgU64(info, 1, UINT64_MAX - 1, "value");
  // A blocking eventfd whose counter is near 2^64 - 1 (a client can put it
  // there) would block the event loop for good. Such fds are not ours to
  // switch to O_NONBLOCK (the flag is shared with the client, which may read
  // it blocking), so ask poll() first: no POLLOUT means "would block", reported
  // like EAGAIN. POLLOUT promises room for 1, the value interrupts write.
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) {
    pollfd p{fd, POLLOUT, 0};
    int r;
    do {
      r = ::poll(&p, 1, 0);
    } while (r < 0 && errno == EINTR);
    if (r == 0 || (r > 0 && !(p.revents & POLLOUT))) return Napi::Boolean::New(info.Env(), false);
  }
  ssize_t n;
  do {
    n = ::write(fd, &v, sizeof v);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    ThrowErrno(info.Env(), errno, "write");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// eventfdSignal(fd): adds 1 to a NON-BLOCKING eventfd with one write();
// false when the counter is full (an interrupt is pending anyway). The
// caller learnt the fd's mode once (isNonBlocking) instead of asking fcntl
// on every interrupt.
Napi::Value EventfdSignal(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(fd, &one, sizeof one);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    ThrowErrno(info.Env(), errno, "write");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// isNonBlocking(fd): O_NONBLOCK on its open file description.
Napi::Value IsNonBlocking(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) ThrowErrno(info.Env(), errno, "fcntl");
  return Napi::Boolean::New(info.Env(), (fl & O_NONBLOCK) != 0);
}

// Writes to BLOCKING eventfds (libvfio-user's client makes its irqfds
// blocking, and the flag is the client's to set, not ours). Such a write
// blocks when the client has filled the counter to 2^64-2; checking with
// poll() first leaves a window in which the client can fill it. So these
// writes are never made by a JS thread: a helper thread makes them, in
// order, on dups the writer owns (closed on its own thread after the writes
// queued before, so an fd number is never reused under a pending write). A
// hostile client can stall that helper, never the event loop.
class DeferredWriter {
 public:
  static DeferredWriter& Get() {
    // Leaked on purpose: a detached thread may still use it at exit.
    static DeferredWriter* w = new DeferredWriter();
    return *w;
  }

  void Signal(int fd) { Push(Op{fd, false}); }
  void Close(int fd) { Push(Op{fd, true}); }
  std::atomic<bool> fillBeforeWrite{false};

 private:
  struct Op {
    int fd;
    bool close;
  };

  void Push(Op op) {
    bool wake;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!started_) {
        // Created with every signal blocked: process signals go elsewhere.
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        std::thread([this] { Run(); }).detach();
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        started_ = true;
      }
      wake = queue_.empty() && idle_;
      queue_.push_back(op);
    }
    if (wake) cv_.notify_one();
  }

  void Run() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      idle_ = true;
      cv_.wait(lk, [this] { return !queue_.empty(); });
      idle_ = false;
      Op op = queue_.front();
      queue_.pop_front();
      lk.unlock();
      if (op.close) {
        ::close(op.fd);
      } else {
        // A full counter already reads as "interrupt pending": skip.
        pollfd p{op.fd, POLLOUT, 0};
        int r;
        do {
          r = ::poll(&p, 1, 0);
        } while (r < 0 && errno == EINTR);
        if (r > 0 && (p.revents & POLLOUT)) {
          if (fillBeforeWrite.load()) {
            // Test hook: the client's race, made certain (see eventfdTestFill).
            uint64_t most = UINT64_MAX - 1;
            (void)!::write(op.fd, &most, sizeof most);
          }
          uint64_t one = 1;
          ssize_t n;
          do {
            n = ::write(op.fd, &one, sizeof one);  // may block: only this thread waits
          } while (n < 0 && errno == EINTR);
        }
      }
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  bool started_ = false;
  bool idle_ = false;
};

// eventfdDeferredOpen(fd): a dup of a blocking eventfd for the helper.
Napi::Value EventfdDeferredOpen(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) ThrowErrno(info.Env(), errno, "dup");
  return Napi::Number::New(info.Env(), d);
}

// eventfdDeferredSignal(dupfd): queues "add 1" for the helper thread.
void EventfdDeferredSignal(const Napi::CallbackInfo& info) { DeferredWriter::Get().Signal(ArgFd(info, 0)); }

// eventfdDeferredClose(dupfd): closes the dup after the writes queued before.
void EventfdDeferredClose(const Napi::CallbackInfo& info) { DeferredWriter::Get().Close(ArgFd(info, 0)); }

// eventfdTestFill(on): test hook. While on, the helper fills each counter to
// 2^64-2 between its POLLOUT check and its write, so that write blocks until
// the client reads: the race a hostile client can win, made certain.
void EventfdTestFill(const Napi::CallbackInfo& info) {
  DeferredWriter::Get().fillBeforeWrite.store(ArgBool(info, 0, "on"));
}

}  // namespace

void InitEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, Eventfd, "eventfd"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead, "eventfdRead"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
  exports.Set("eventfdSignal", Napi::Function::New(env, EventfdSignal, "eventfdSignal"));
  exports.Set("isNonBlocking", Napi::Function::New(env, IsNonBlocking, "isNonBlocking"));
  exports.Set("eventfdDeferredOpen", Napi::Function::New(env, EventfdDeferredOpen, "eventfdDeferredOpen"));
  exports.Set("eventfdDeferredSignal", Napi::Function::New(env, EventfdDeferredSignal, "eventfdDeferredSignal"));
  exports.Set("eventfdDeferredClose", Napi::Function::New(env, EventfdDeferredClose, "eventfdDeferredClose"));
  exports.Set("eventfdTestFill", Napi::Function::New(env, EventfdTestFill, "eventfdTestFill"));
  exports.Set("EFD_NONBLOCK", Napi::Number::New(env, kJsNonblock));
  exports.Set("EFD_SEMAPHORE", Napi::Number::New(env, kJsSemaphore));
}

}  // namespace vun
