// Module entry point and the helpers shared by the subsystems (errors, argument
// checks). Each subsystem lives in its own file: socket.cc, poller.cc,
// memory.cc, eventfd.cc.
#include <string.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <string>

#include "common.h"

namespace vun {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  const char* name = strerrorname_np(err);
  const char* desc = strerrordesc_np(err);
  char fallback[24];
  if (name == nullptr) {
    snprintf(fallback, sizeof fallback, "E%d", err);
    name = fallback;
  }
  std::string msg = std::string(syscall) + ": " + name + " (" + (desc ? desc : "Unknown error") + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  Napi::Object o = e.Value();
  o.Set("code", Napi::String::New(env, name));
  o.Set("errno", Napi::Number::New(env, err));
  o.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

void ThrowType(Napi::Env env, const char* msg) {
  Napi::Error e = Napi::TypeError::New(env, msg);
  e.Value().Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw e;
}

void ThrowRange(Napi::Env env, const char* msg) {
  Napi::Error e = Napi::RangeError::New(env, msg);
  e.Value().Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw e;
}

static double ArgNumber(const Napi::CallbackInfo& info, size_t i, const char* what) {
  napi_env env = info.Env();
  double d;
  if (napi_get_value_double(env, info[i], &d) != napi_ok) {
    std::string m = std::string(what) + " must be a number";
    ThrowType(info.Env(), m.c_str());
  }
  return d;
}

int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, int64_t lo, int64_t hi, const char* what) {
  double d = ArgNumber(info, i, what);
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || std::trunc(d) != d) {
    std::string m = std::string(what) + " must be an integer in [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "], got " + std::to_string(d);
    ThrowRange(info.Env(), m.c_str());
  }
  return static_cast<int64_t>(d);
}

int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<int>(ArgInt(info, i, 0, INT32_MAX, "fd"));
}

uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, uint64_t max, const char* what) {
  Napi::Value v = info[i];
  if (v.IsBigInt()) {
    int sign = 0;
    size_t words = 1;
    uint64_t u = 0;
    if (napi_get_value_bigint_words(info.Env(), v, &sign, &words, &u) != napi_ok) {
      ThrowType(info.Env(), "bad bigint");
    }
    if (sign != 0 || words > 1 || u > max) {
      std::string m = std::string(what) + " out of range";
      ThrowRange(info.Env(), m.c_str());
    }
    return u;
  }
  uint64_t hi = max < 9007199254740991ULL ? max : 9007199254740991ULL;
  return static_cast<uint64_t>(ArgInt(info, i, 0, static_cast<int64_t>(hi), what));
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) {
    std::string m = std::string(what) + " must be a boolean";
    ThrowType(info.Env(), m.c_str());
  }
  return v.As<Napi::Boolean>().Value();
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsString()) {
    std::string m = std::string(what) + " must be a string";
    ThrowType(info.Env(), m.c_str());
  }
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) {
    std::string m = std::string(what) + " must not contain NUL bytes";
    ThrowType(info.Env(), m.c_str());
  }
  return s;
}

Bytes ArgUint8Array(const Napi::CallbackInfo& info, size_t i, const char* what) {
  napi_env env = info.Env();
  bool is = false;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_is_typedarray(env, info[i], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, info[i], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    std::string m = std::string(what) + " must be a Uint8Array";
    ThrowType(info.Env(), m.c_str());
  }
  return Bytes{static_cast<uint8_t*>(data), length};
}

}  // namespace vun

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  vun::InitSocket(env, exports);
  vun::InitPoller(env, exports);
  vun::InitMemory(env, exports);
  vun::InitEventfd(env, exports);
  return exports;
}

NODE_API_MODULE(vfio_user_native, Init)
