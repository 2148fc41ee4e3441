// Shared helpers for the vfio_user_native addon: errno-style JS errors and
// argument validation. No JS values are kept in static storage (the addon is
// loaded by several worker_threads at once).
#pragma once

#include <napi.h>

#include <sys/uio.h>

#include <cstdint>

namespace vun {

// A JS Error with .code (errno name), .errno (positive number) and .syscall,
// message "syscall: CODE (description)".
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);

[[noreturn]] inline void ThrowErrno(Napi::Env env, int err, const char* syscall) {
  throw ErrnoError(env, err, syscall);
}

[[noreturn]] void ThrowType(Napi::Env env, const char* msg);
[[noreturn]] void ThrowRange(Napi::Env env, const char* msg);

// A non-negative int32 file descriptor.
int ArgFd(const Napi::CallbackInfo& info, size_t i);
// An integral JS number in [lo, hi].
int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, int64_t lo, int64_t hi, const char* what);
// A non-negative integer given as number (<= 2^53-1) or bigint (<= max).
uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, uint64_t max, const char* what);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* what);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* what);

// Uint8Array (or Buffer) argument: pointer to its first byte and byte length.
struct Bytes {
  uint8_t* data;
  size_t length;
};
Bytes ArgUint8Array(const Napi::CallbackInfo& info, size_t i, const char* what);

// recvmsg on a UNIX stream socket with SCM_RIGHTS: fds land in out[2..]
// (at most maxFds, CLOEXEC; any beyond are closed), out[0] = their count,
// out[1] bit 0 = some were lost (MSG_CTRUNC or over maxFds). Returns
// recvmsg's result (errno set on -1). With MSG_DONTWAIT in flags EINTR is
// retried; without it (a blocking receive) EINTR is returned to the caller,
// which is how a blocked receive is interrupted.
ssize_t RecvWithFds(int fd, iovec iov, int32_t* out, size_t maxFds, int flags);

void InitSocket(Napi::Env env, Napi::Object exports);
void InitPoller(Napi::Env env, Napi::Object exports);
void InitMemory(Napi::Env env, Napi::Object exports);
void InitEventfd(Napi::Env env, Napi::Object exports);

}  // namespace vun
