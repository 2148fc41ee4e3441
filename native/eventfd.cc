// eventfd(2). Always EFD_CLOEXEC. The JS flag values are this addon's own:
// EFD_NONBLOCK = 1, EFD_SEMAPHORE = 2 (mapped to the kernel's bits here).
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

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

}  // namespace

void InitEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, Eventfd, "eventfd"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead, "eventfdRead"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
  exports.Set("EFD_NONBLOCK", Napi::Number::New(env, kJsNonblock));
  exports.Set("EFD_SEMAPHORE", Napi::Number::New(env, kJsSemaphore));
}

}  // namespace vun
