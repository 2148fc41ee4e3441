// memfd, seals, ftruncate/fstat and MAP_SHARED mappings exposed as external
// ArrayBuffers.
//
// Mapping lifetime: each mapping has a Mapping record. munmap(ab) detaches the
// ArrayBuffer (views then read length 0), unmaps, and marks the record; the GC
// finalizer later frees the record without unmapping again. The registry maps
// base address -> record so munmap(ab) can find it; it is process-wide (workers
// share one address space) and guarded by a mutex. No JS values are stored.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <malloc.h>

#include "common.h"

namespace vun {
namespace {

struct Mapping {
  void* addr;
  size_t length;
  bool unmapped = false;
  // Inside napi_create_external_arraybuffer: a finalizer call then (Node makes
  // one when creation fails) leaves the cleanup to Mmap(), which owns `m` until
  // creation succeeded.
  bool creating = true;
};

std::mutex g_mu;
std::unordered_map<void*, Mapping*>* g_maps = new std::unordered_map<void*, Mapping*>();  // never freed: used by finalizers at exit

constexpr uint64_t kMaxSafe = 9007199254740991ULL;
// Node 20 implements external ArrayBuffers with node::Buffer, whose limit is
// buffer.constants.MAX_LENGTH = 2^32 bytes. Longer mappings are refused with
// ERANGE (map large regions in windows).
constexpr uint64_t kMaxMapLength = 1ULL << 32;

size_t PageSize() {
  static const size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return ps;
}

void FinalizeMapping(napi_env, void*, void* hint) {
  Mapping* m = static_cast<Mapping*>(hint);
  std::lock_guard<std::mutex> lk(g_mu);
  if (m->creating) return;
  if (!m->unmapped) {
    ::munmap(m->addr, m->length);
    auto it = g_maps->find(m->addr);
    if (it != g_maps->end() && it->second == m) g_maps->erase(it);
  }
  delete m;
}

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  std::string name = ArgString(info, 0, "name");
  bool sealing = ArgBool(info, 1, "allowSealing");
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | (sealing ? MFD_ALLOW_SEALING : 0));
  if (fd < 0) ThrowErrno(info.Env(), errno, "memfd_create");
  return Napi::Number::New(info.Env(), fd);
}

void Ftruncate(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t size = ArgU64(info, 1, INT64_MAX, "size");
  if (::ftruncate(fd, static_cast<off_t>(size)) < 0) ThrowErrno(info.Env(), errno, "ftruncate");
}

Napi::Value FstatSize(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  struct stat st;
  if (::fstat(fd, &st) < 0) ThrowErrno(info.Env(), errno, "fstat");
  if (static_cast<uint64_t>(st.st_size) > kMaxSafe) ThrowErrno(info.Env(), EOVERFLOW, "fstat");
  return Napi::Number::New(info.Env(), static_cast<double>(st.st_size));
}

void AddSeals(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int seals = static_cast<int>(ArgInt(info, 1, 0, INT32_MAX, "seals"));
  if (::fcntl(fd, F_ADD_SEALS, seals) < 0) ThrowErrno(info.Env(), errno, "fcntl(F_ADD_SEALS)");
}

// getSeals(fd): the seal mask, or -1 when the fd does not support sealing
// (EINVAL: not a memfd/shmem/hugetlbfs file). Other errors (EBADF) throw.
Napi::Value GetSeals(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int r = ::fcntl(fd, F_GET_SEALS);
  if (r < 0) {
    if (errno == EINVAL) return Napi::Number::New(info.Env(), -1);
    ThrowErrno(info.Env(), errno, "fcntl(F_GET_SEALS)");
  }
  return Napi::Number::New(info.Env(), r);
}

// mmap(fd, offset, length, prot): MAP_SHARED; offset must be page aligned
// (EINVAL); 0 < length <= 2^32 (ERANGE above); prot is a non-empty mask of
// PROT_READ (1) | PROT_WRITE (2); PROT_READ is always added (a MAP_SHARED
// mapping needs a readable fd anyway, and x86 cannot map write-only). For regular files (memfd, shm, hugetlbfs) offset +
// length must lie within the file (ENXIO): touching pages past EOF raises
// SIGBUS. The file can still be shrunk later by its owner unless
// F_SEAL_SHRINK is set; callers mapping untrusted fds should check seals.
// Writing through a PROT_READ mapping crashes the process (SIGSEGV).
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t offset = ArgU64(info, 1, INT64_MAX, "offset");
  uint64_t length = static_cast<uint64_t>(ArgInt(info, 2, 0, INT64_C(9007199254740991), "length"));
  int prot = static_cast<int>(ArgInt(info, 3, 0, 3, "prot"));
  if (offset % PageSize() != 0) ThrowErrno(env, EINVAL, "mmap");
  if (length == 0 || prot == 0) ThrowErrno(env, EINVAL, "mmap");
  if (length > kMaxMapLength) ThrowErrno(env, ERANGE, "mmap");
  struct stat st;
  if (::fstat(fd, &st) < 0) ThrowErrno(env, errno, "fstat");
  if (S_ISREG(st.st_mode) &&
      (offset > static_cast<uint64_t>(st.st_size) || length > static_cast<uint64_t>(st.st_size) - offset)) {
    ThrowErrno(env, ENXIO, "mmap");
  }
  int p = PROT_READ | ((prot & 2) ? PROT_WRITE : 0);
  void* addr = ::mmap(nullptr, length, p, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (addr == MAP_FAILED) ThrowErrno(env, errno, "mmap");

  Mapping* m = new Mapping{addr, static_cast<size_t>(length)};
  {
    std::lock_guard<std::mutex> lk(g_mu);
    (*g_maps)[addr] = m;
  }
  napi_value ab;
  napi_status st2 = napi_create_external_arraybuffer(env, addr, m->length, FinalizeMapping, m, &ab);
  {
    std::lock_guard<std::mutex> lk(g_mu);
    m->creating = false;
    if (st2 != napi_ok) {
      g_maps->erase(addr);
      ::munmap(addr, m->length);
      delete m;
      m = nullptr;
    }
  }
  if (st2 != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
    }
    ThrowErrno(env, ERANGE, "napi_create_external_arraybuffer");
  }
  return Napi::Value(env, ab);
}

// Finds the live mapping behind an ArrayBuffer; nullptr if detached (already
// unmapped). Throws EINVAL for an ArrayBuffer that is not one of ours.
Mapping* LookupMapping(const Napi::CallbackInfo& info, const char* syscall, napi_value* abOut) {
  Napi::Env env = info.Env();
  napi_value v = info[0];
  bool isAb = false;
  if (napi_is_arraybuffer(env, v, &isAb) != napi_ok || !isAb) ThrowType(env, "expected an ArrayBuffer from mmap()");
  bool detached = false;
  napi_is_detached_arraybuffer(env, v, &detached);
  *abOut = v;
  if (detached) return nullptr;
  void* data = nullptr;
  size_t len = 0;
  napi_get_arraybuffer_info(env, v, &data, &len);
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_maps->find(data);
  if (data == nullptr || it == g_maps->end() || it->second->length != len || it->second->unmapped) {
    ThrowErrno(env, EINVAL, syscall);
  }
  return it->second;
}

// munmap(ab): detach, then unmap. A second call (detached buffer) is a no-op.
void Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value ab;
  Mapping* m = LookupMapping(info, "munmap", &ab);
  if (m == nullptr) return;
  if (napi_detach_arraybuffer(env, ab) != napi_ok) {
    throw Napi::Error::New(env, "munmap: the ArrayBuffer cannot be detached");
  }
  std::lock_guard<std::mutex> lk(g_mu);
  ::munmap(m->addr, m->length);
  m->unmapped = true;  // the finalizer frees the record only
  g_maps->erase(m->addr);
}

// Placeholders left by revoke(): page ranges reserved with an inaccessible
// anonymous mapping, so that nothing else can be mapped there while a late
// access (a readv in the thread pool) may still use the addresses. Keyed by
// a token; guarded by g_mu like the mapping registry.
struct Placeholder {
  void* addr;
  size_t length;
};
std::unordered_map<uint32_t, Placeholder>* g_placeholders = new std::unordered_map<uint32_t, Placeholder>();
uint32_t g_nextToken = 1;

// revoke(ab, keep): detach `ab`, then unmap it, except that every range of
// `keep` (a flat array [offset, length, ...] of page-aligned, sorted,
// disjoint ranges inside the mapping) is replaced in place by a PROT_NONE
// anonymous mapping (MAP_FIXED: the replacement is atomic, the addresses are
// never free). An access there fails (EFAULT from a syscall, SIGSEGV from
// code) and can never reach memory mapped later. Returns one token per range
// for releasePlaceholder(). A detached `ab` throws EINVAL (nothing to keep).
Napi::Value Revoke(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value ab;
  Mapping* m = LookupMapping(info, "revoke", &ab);
  if (m == nullptr) ThrowErrno(env, EINVAL, "revoke");
  if (!info[1].IsArray()) ThrowType(env, "keep must be an array of numbers");
  Napi::Array arr = info[1].As<Napi::Array>();
  uint32_t n = arr.Length();
  if (n % 2 != 0) ThrowType(env, "keep must hold offset/length pairs");
  std::vector<std::pair<size_t, size_t>> keep;
  size_t end = 0;
  for (uint32_t i = 0; i < n; i += 2) {
    Napi::Value a = arr.Get(i), b = arr.Get(i + 1);
    if (!a.IsNumber() || !b.IsNumber()) ThrowType(env, "keep must hold numbers");
    double off = a.As<Napi::Number>().DoubleValue(), len = b.As<Napi::Number>().DoubleValue();
    if (!(off >= 0) || !(len > 0) || off != static_cast<double>(static_cast<uint64_t>(off)) ||
        len != static_cast<double>(static_cast<uint64_t>(len)) || off + len > static_cast<double>((m->length + PageSize() - 1) / PageSize() * PageSize())) {
      ThrowRange(env, "keep range outside the mapping");
    }
    size_t o = static_cast<size_t>(off), l = static_cast<size_t>(len);
    if (o % PageSize() != 0 || l % PageSize() != 0 || o < end) ThrowErrno(env, EINVAL, "revoke");
    keep.emplace_back(o, l);
    end = o + l;
  }
  // The array getters above may have run JS: look the mapping up again.
  m = LookupMapping(info, "revoke", &ab);
  if (m == nullptr) ThrowErrno(env, EINVAL, "revoke");
  if (napi_detach_arraybuffer(env, ab) != napi_ok) {
    throw Napi::Error::New(env, "revoke: the ArrayBuffer cannot be detached");
  }
  Napi::Array tokens = Napi::Array::New(env, keep.size());
  std::lock_guard<std::mutex> lk(g_mu);
  char* base = static_cast<char*>(m->addr);
  size_t pos = 0;
  uint32_t i = 0;
  for (auto& r : keep) {
    if (r.first > pos) ::munmap(base + pos, r.first - pos);
    void* p = ::mmap(base + r.first, r.second, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    // Should the kernel refuse (ENOMEM), the original pages stay mapped:
    // still never reused by another mapping, and freed with the token.
    (void)p;
    uint32_t t = g_nextToken++;
    if (g_nextToken == 0) g_nextToken = 1;
    (*g_placeholders)[t] = Placeholder{base + r.first, r.second};
    tokens.Set(i++, Napi::Number::New(env, t));
    pos = r.first + r.second;
  }
  if (pos < m->length) ::munmap(base + pos, m->length - pos);
  m->unmapped = true;
  g_maps->erase(m->addr);
  return tokens;
}

// releasePlaceholder(token): unmaps a placeholder from revoke(). Unknown or
// already released tokens are ignored.
void ReleasePlaceholder(const Napi::CallbackInfo& info) {
  uint32_t t = static_cast<uint32_t>(ArgInt(info, 0, 0, UINT32_MAX, "token"));
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_placeholders->find(t);
  if (it == g_placeholders->end()) return;
  ::munmap(it->second.addr, it->second.length);
  g_placeholders->erase(it);
}

// placeholderCount(): live placeholders (tests and leak checks).
Napi::Value PlaceholderCount(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lk(g_mu);
  return Napi::Number::New(info.Env(), static_cast<double>(g_placeholders->size()));
}

// msync(ab, offset, length): MS_SYNC over [offset, offset+length) of the
// mapping; the start is rounded down to a page boundary.
void Msync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value ab;
  Mapping* m = LookupMapping(info, "msync", &ab);
  if (m == nullptr) ThrowErrno(env, EINVAL, "msync");
  uint64_t off = static_cast<uint64_t>(ArgInt(info, 1, 0, INT64_C(9007199254740991), "offset"));
  uint64_t len = static_cast<uint64_t>(ArgInt(info, 2, 0, INT64_C(9007199254740991), "length"));
  if (off > m->length || len > m->length - off) ThrowRange(env, "offset/length outside the mapping");
  uint64_t start = off - off % PageSize();
  if (::msync(static_cast<char*>(m->addr) + start, len + (off - start), MS_SYNC) < 0) {
    ThrowErrno(env, errno, "msync");
  }
}

// madviseDontDump(ab): exclude the mapping from core dumps (guest memory).
void MadviseDontDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value ab;
  Mapping* m = LookupMapping(info, "madvise", &ab);
  if (m == nullptr) ThrowErrno(env, EINVAL, "madvise");
  if (::madvise(m->addr, m->length, MADV_DONTDUMP) < 0) ThrowErrno(env, errno, "madvise");
}

Napi::Value JsPageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(PageSize()));
}

}  // namespace


// tuneAllocator(mmapThreshold, trimThreshold): glibc serves allocations
// above M_MMAP_THRESHOLD (128 KiB by default) with fresh mmaps and returns
// them on free, so every megabyte transfer buffer is page-faulted in anew
// (about 17 us a page on a nested VM). Raising the thresholds keeps freed
// buffers for reuse. Process-wide; returns false where mallopt refuses.
Napi::Value TuneAllocator(const Napi::CallbackInfo& info) {
  int mmapThreshold = static_cast<int>(ArgInt(info, 0, 0, 32 << 20, "mmapThreshold"));
  int trimThreshold = static_cast<int>(ArgInt(info, 1, 0, INT32_MAX, "trimThreshold"));
  bool ok = mallopt(M_MMAP_THRESHOLD, mmapThreshold) == 1;
  ok = mallopt(M_TRIM_THRESHOLD, trimThreshold) == 1 && ok;
  return Napi::Boolean::New(info.Env(), ok);
}

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("tuneAllocator", Napi::Function::New(env, TuneAllocator, "tuneAllocator"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("ftruncate", Napi::Function::New(env, Ftruncate, "ftruncate"));
  exports.Set("fstatSize", Napi::Function::New(env, FstatSize, "fstatSize"));
  exports.Set("addSeals", Napi::Function::New(env, AddSeals, "addSeals"));
  exports.Set("getSeals", Napi::Function::New(env, GetSeals, "getSeals"));
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("revoke", Napi::Function::New(env, Revoke, "revoke"));
  exports.Set("releasePlaceholder", Napi::Function::New(env, ReleasePlaceholder, "releasePlaceholder"));
  exports.Set("placeholderCount", Napi::Function::New(env, PlaceholderCount, "placeholderCount"));
  exports.Set("msync", Napi::Function::New(env, Msync, "msync"));
  exports.Set("madviseDontDump", Napi::Function::New(env, MadviseDontDump, "madviseDontDump"));
  exports.Set("pageSize", Napi::Function::New(env, JsPageSize, "pageSize"));
  exports.Set("PROT_READ", Napi::Number::New(env, 1));
  exports.Set("PROT_WRITE", Napi::Number::New(env, 2));
  exports.Set("F_SEAL_SEAL", Napi::Number::New(env, F_SEAL_SEAL));
  exports.Set("F_SEAL_SHRINK", Napi::Number::New(env, F_SEAL_SHRINK));
  exports.Set("F_SEAL_GROW", Napi::Number::New(env, F_SEAL_GROW));
  exports.Set("F_SEAL_WRITE", Napi::Number::New(env, F_SEAL_WRITE));
}

}  // namespace vun
