// AF_UNIX stream sockets with SCM_RIGHTS, plus small fd utilities.
// Every fd created here is CLOEXEC; sockets handed out are O_NONBLOCK.
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common.h"

namespace vun {
namespace {

// Linux SCM_MAX_FD: the kernel never passes more fds in one message.
constexpr size_t kMaxFds = 253;

// Closes an fd on scope exit unless released.
struct FdGuard {
  int fd;
  explicit FdGuard(int f) : fd(f) {}
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

sockaddr_un MakeAddr(Napi::Env env, const std::string& path, const char* syscall, socklen_t* len) {
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.empty()) ThrowErrno(env, ENOENT, syscall);
  if (path.size() >= sizeof addr.sun_path) ThrowErrno(env, ENAMETOOLONG, syscall);
  memcpy(addr.sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return addr;
}

// Removes a private directory (and the socket file in it) on scope exit.
struct PrivateDir {
  std::string path;
  int fd = -1;
  bool hasSocket = false;
  ~PrivateDir() {
    if (fd >= 0) {
      if (hasSocket) ::unlinkat(fd, "s", 0);
      ::close(fd);
    }
    if (!path.empty()) ::rmdir(path.c_str());
  }
};

// listen(path, mode, backlog): a listening, non-blocking socket whose file at
// `path` has exactly `mode`, never more at any moment, and no symlink can
// redirect the mode change. The socket is bound inside a fresh private
// directory (mkdtemp, 0700, beside `path`) that no other user can enter, so
// the chmod that restores the bits the umask took cannot be redirected; it
// listens there, then is hard-linked to `path` (link never replaces: an
// existing file is EADDRINUSE) and the private directory is removed, also on
// every failure. The process umask is never touched (other threads run).
// Errors carry syscall "bind", as a plain bind at `path` would.
Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  mode_t mode = static_cast<mode_t>(ArgInt(info, 1, 0, 07777, "mode"));
  int backlog = static_cast<int>(ArgInt(info, 2, 0, INT32_MAX, "backlog"));
  socklen_t alen;
  MakeAddr(env, path, "listen", &alen);  // the final path must fit a sockaddr_un
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (slash != std::string::npos && slash + 1 == path.size()) ThrowErrno(env, EISDIR, "bind");

  PrivateDir priv;
  std::string tmpl = dir + "/.vfio-user-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) ThrowErrno(env, errno, "bind");
  priv.path = tmpl;
  priv.fd = ::open(priv.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (priv.fd < 0) ThrowErrno(env, errno, "open");
  // The name inside the private directory, through /proc when the real one
  // would not fit a sockaddr_un.
  std::string inner = priv.path + "/s";
  if (inner.size() >= sizeof(sockaddr_un::sun_path)) inner = "/proc/self/fd/" + std::to_string(priv.fd) + "/s";
  sockaddr_un addr = MakeAddr(env, inner, "bind", &alen);

  FdGuard s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (s.fd < 0) ThrowErrno(env, errno, "socket");
  // Linux creates the file with (inode mode & ~umask): never more than `mode`.
  if (::fchmod(s.fd, mode) < 0) ThrowErrno(env, errno, "fchmod");
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), alen) < 0) ThrowErrno(env, errno, "bind");
  priv.hasSocket = true;
  if (::fchmodat(priv.fd, "s", mode, 0) < 0) ThrowErrno(env, errno, "chmod");
  if (::listen(s.fd, backlog) < 0) ThrowErrno(env, errno, "listen");
  if (::linkat(priv.fd, "s", AT_FDCWD, path.c_str(), 0) < 0) ThrowErrno(env, errno == EEXIST ? EADDRINUSE : errno, "bind");
  return Napi::Number::New(env, s.release());
}

// accept(listenFd): a CLOEXEC|NONBLOCK connection, or -1 when none is pending.
Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  for (;;) {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c >= 0) return Napi::Number::New(env, c);
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "accept");
  }
}

// connect(path, wait = true): blocking connect, then switched to non-blocking.
// With wait false the connect itself does not block: a listener whose backlog
// is full fails it with EAGAIN instead.
Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  bool wait = info.Length() < 2 || info[1].IsUndefined() ? true : ArgBool(info, 1, "wait");
  socklen_t alen;
  sockaddr_un addr = MakeAddr(env, path, "connect", &alen);
  FdGuard s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (wait ? 0 : SOCK_NONBLOCK), 0));
  if (s.fd < 0) ThrowErrno(env, errno, "socket");
  if (!wait) {
    if (::connect(s.fd, reinterpret_cast<sockaddr*>(&addr), alen) < 0) ThrowErrno(env, errno, "connect");
    return Napi::Number::New(env, s.release());
  }
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&addr), alen) < 0) {
    // An interrupted AF_UNIX connect completes in the background; wait for it.
    if (errno != EINTR) ThrowErrno(env, errno, "connect");
    int err = 0;
    socklen_t el = sizeof err;
    pollfd pfd{s.fd, POLLOUT, 0};
    while (::poll(&pfd, 1, -1) < 0 && errno == EINTR) {
    }
    if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) ThrowErrno(env, errno, "getsockopt");
    if (err != 0) ThrowErrno(env, err, "connect");
  }
  int fl = ::fcntl(s.fd, F_GETFL);
  if (fl < 0 || ::fcntl(s.fd, F_SETFL, fl | O_NONBLOCK) < 0) ThrowErrno(env, errno, "fcntl");
  return Napi::Number::New(env, s.release());
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
    ThrowErrno(env, errno, "socketpair");
  }
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, sv[0]));
  a.Set(1u, Napi::Number::New(env, sv[1]));
  return a;
}

}  // namespace

// See common.h.
ssize_t RecvWithFds(int fd, iovec iov, int32_t* out, size_t maxFds, int flags) {
  if (maxFds > kMaxFds) maxFds = kMaxFds;
  // Sized for the caller's capacity; CMSG_SPACE rounding may let the kernel
  // deliver one more, which is closed below and reported as truncation.
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (maxFds > 0) {
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * maxFds);
  }
  out[0] = 0;
  out[1] = 0;
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, flags | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR && (flags & MSG_DONTWAIT) != 0);
  if (n < 0) return n;
  int32_t count = 0;
  int32_t tflags = (msg.msg_flags & MSG_CTRUNC) ? 1 : 0;
  if (msg.msg_controllen > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* p = CMSG_DATA(c);
      for (size_t i = 0; i < nfd; i++) {
        int rfd;
        memcpy(&rfd, p + i * sizeof(int), sizeof(int));
        if (static_cast<size_t>(count) < maxFds) {
          out[2 + count++] = rfd;
        } else {
          ::close(rfd);
          tflags |= 1;
        }
      }
    }
  }
  out[0] = count;
  out[1] = tflags;
  return n;
}

namespace {

// The (buf, offset, length) arguments at 1..3 of recvmsg and sendmsg, as an
// iovec checked to lie inside the buffer.
iovec ArgSpan(const Napi::CallbackInfo& info) {
  Bytes b = ArgUint8Array(info, 1, "buf");
  int64_t off = ArgInt(info, 2, 0, INT64_C(9007199254740991), "offset");
  int64_t len = ArgInt(info, 3, 0, INT64_C(9007199254740991), "length");
  if (static_cast<uint64_t>(off) > b.length || static_cast<uint64_t>(len) > b.length - off) {
    ThrowRange(info.Env(), "offset/length outside the buffer");
  }
  return iovec{b.data + off, static_cast<size_t>(len)};
}

// recvmsg(fd, buf, offset, length, fdsOut): see binding.ts for the contract.
Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  iovec iov = ArgSpan(info);

  napi_typedarray_type type;
  size_t outLen = 0;
  void* outData = nullptr;
  bool isTa = false;
  if (napi_is_typedarray(env, info[4], &isTa) != napi_ok || !isTa ||
      napi_get_typedarray_info(env, info[4], &type, &outLen, &outData, nullptr, nullptr) != napi_ok ||
      type != napi_int32_array || outLen < 2) {
    ThrowType(env, "fdsOut must be an Int32Array of length >= 2");
  }
  int32_t* out = static_cast<int32_t*>(outData);
  size_t maxFds = outLen - 2;

  ssize_t n = RecvWithFds(fd, iov, out, maxFds, MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "recvmsg");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// sendmsg(fd, buf, offset, length, fds | null): bytes sent, or -1 on EAGAIN.
// The fd array is read first: its element getters can run JS, which may
// detach or resize the buffer, so the buffer's span is taken only after.
Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);

  int fds[kMaxFds];
  uint32_t nfd = 0;
  Napi::Value fv = info[4];
  if (!fv.IsNull() && !fv.IsUndefined()) {
    if (!fv.IsArray()) ThrowType(env, "fds must be an array of fds or null");
    Napi::Array arr = fv.As<Napi::Array>();
    nfd = arr.Length();
    if (nfd > kMaxFds) ThrowErrno(env, ETOOMANYREFS, "sendmsg");
    for (uint32_t i = 0; i < nfd; i++) {
      Napi::Value e = arr.Get(i);
      double d;
      if (napi_get_value_double(env, e, &d) != napi_ok || !(d >= 0 && d <= INT32_MAX) ||
          static_cast<double>(static_cast<int>(d)) != d) {
        ThrowType(env, "fds must contain non-negative integer fds");
      }
      fds[i] = static_cast<int>(d);
    }
  }
  iovec iov = ArgSpan(info);

  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfd > 0) {
    // A zero-length write on a stream socket sends nothing, fds included.
    if (iov.iov_len == 0) ThrowErrno(env, EINVAL, "sendmsg");
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfd);
    memset(cbuf, 0, msg.msg_controllen);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfd);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfd);
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "sendmsg");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

void Shutdown(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int how = static_cast<int>(ArgInt(info, 1, 0, 2, "how"));
  static_assert(SHUT_RD == 0 && SHUT_WR == 1 && SHUT_RDWR == 2, "shutdown constants");
  if (::shutdown(fd, how) < 0 && errno != ENOTCONN) ThrowErrno(info.Env(), errno, "shutdown");
}

// close(fd): EINTR is ignored (on Linux the fd is released regardless).
void Close(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  if (::close(fd) < 0 && errno != EINTR) ThrowErrno(info.Env(), errno, "close");
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) ThrowErrno(info.Env(), errno, "dup");
  return Napi::Number::New(info.Env(), d);
}

void SetNonBlocking(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  bool on = ArgBool(info, 1, "on");
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) ThrowErrno(info.Env(), errno, "fcntl");
  int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (nfl != fl && ::fcntl(fd, F_SETFL, nfl) < 0) ThrowErrno(info.Env(), errno, "fcntl");
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  ucred cred;
  socklen_t l = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &l) < 0) ThrowErrno(env, errno, "getsockopt");
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

// setBufferSizes(fd, send, recv): SO_SNDBUF / SO_RCVBUF (the kernel doubles
// and caps them at wmem_max / rmem_max). Larger buffers let a 1 MiB message
// go out in one sendmsg instead of five wake-ups of the event loop.
void SetBufferSizes(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int snd = static_cast<int>(ArgInt(info, 1, 0, INT32_MAX, "send"));
  int rcv = static_cast<int>(ArgInt(info, 2, 0, INT32_MAX, "recv"));
  if (snd > 0 && ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd) < 0) ThrowErrno(info.Env(), errno, "setsockopt");
  if (rcv > 0 && ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv) < 0) ThrowErrno(info.Env(), errno, "setsockopt");
}

// fdType(fd): 'socket' | 'file' | 'fifo' | 'char' | 'anon' | 'other'.
// 'anon' is an anonymous inode (eventfd, epoll, timerfd...: no S_IFMT bits);
// memfds are 'file'; directories and block devices are 'other'.
Napi::Value FdType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  struct stat st;
  if (::fstat(fd, &st) < 0) ThrowErrno(env, errno, "fstat");
  const char* t;
  switch (st.st_mode & S_IFMT) {
    case S_IFSOCK: t = "socket"; break;
    case S_IFREG: t = "file"; break;
    case S_IFIFO: t = "fifo"; break;
    case S_IFCHR: t = "char"; break;
    case 0: t = "anon"; break;
    default: t = "other"; break;
  }
  return Napi::String::New(env, t);
}

// flock(fd, op): 0 unlocks, 1 takes a shared lock, 2 an exclusive one, never
// waiting: true when held, false when another open file description holds a
// conflicting lock (EWOULDBLOCK). The lock goes with the last close.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int op = static_cast<int>(ArgInt(info, 1, 0, 2, "op"));
  int how = (op == 0 ? LOCK_UN : op == 1 ? LOCK_SH : LOCK_EX) | LOCK_NB;
  int r;
  do {
    r = ::flock(fd, how);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "flock");
  }
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("listen", Napi::Function::New(env, Listen, "listen"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("connect", Napi::Function::New(env, Connect, "connect"));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("recvmsg", Napi::Function::New(env, RecvMsg, "recvmsg"));
  exports.Set("sendmsg", Napi::Function::New(env, SendMsg, "sendmsg"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("dup", Napi::Function::New(env, Dup, "dup"));
  exports.Set("setNonBlocking", Napi::Function::New(env, SetNonBlocking, "setNonBlocking"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
  exports.Set("fdType", Napi::Function::New(env, FdType, "fdType"));
  exports.Set("setBufferSizes", Napi::Function::New(env, SetBufferSizes, "setBufferSizes"));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
}

}  // namespace vun
