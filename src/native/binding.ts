/**
 * Typed loader for the vfio_user_native addon (native/*.cc): AF_UNIX sockets
 * with SCM_RIGHTS, a libuv poll handle, eventfd, memfd and mmap. Syscalls only,
 * no protocol knowledge.
 *
 * The addon is looked for under the package root (the nearest ancestor of this
 * file holding both binding.gyp and package.json, so it works from src/ under
 * tsx and from dist/), in node-gyp-build's order: a local build first
 * (build/Release, then build/Debug), then the prebuilt addon the npm tarball
 * carries (prebuilds/<platform>-<arch>/vfio_user_native.napi.glibc.node, built
 * at pack time). The first that loads wins; one that exists but cannot load
 * (an older glibc than the prebuild needs) is skipped. The
 * VFIO_USER_NATIVE_PATH environment variable names the one file to load
 * instead (e.g. an ASan build).
 * It is context-aware: every worker_thread may load it and use it.
 *
 * Errors from syscalls are `Error`s with `code` (errno name), `errno` (positive
 * number) and `syscall` (the failing call, e.g. 'bind' for a path in use),
 * message `"bind: EADDRINUSE (Address already in use)"`. Those of connect()
 * and listen() also carry the socket `path` and name it in the message, and
 * say when what is at the path is not a socket:
 * `"connect /run/dev.sock: ECONNREFUSED (Connection refused): the path is a regular file, not a socket"`. Bad arguments throw
 * TypeError (code ERR_INVALID_ARG_TYPE) or RangeError (code ERR_OUT_OF_RANGE).
 */
import { existsSync, lstatSync, type Stats } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Poll events (UV_READABLE, UV_WRITABLE, UV_DISCONNECT). */
export type PollEvents = number;

/** A libuv poll handle on the event loop of the thread that created it. */
export interface PollerHandle {
  /**
   * Start (or change) watching for `events` (READABLE | WRITABLE | DISCONNECT).
   * Level-triggered: read/write until EAGAIN. While started the Poller object is
   * kept alive by the native side. Throws EBADF after close().
   */
  start(events: PollEvents): void;
  /** Stop watching; the handle stays open and can be started again. */
  stop(): void;
  /**
   * Stop and close the handle (freed in the uv_close callback). Idempotent,
   * safe inside the callback; the callback is never called afterwards.
   * Close the Poller before closing its fd.
   */
  close(): void;
  /** Keep the event loop alive while started (the default). */
  ref(): void;
  /** Do not keep the event loop alive on this handle's account. */
  unref(): void;
  /**
   * Blocking receive (dedicated-thread mode): while on, a callback that
   * returns true makes the poller wait for the next bytes in a blocking
   * recvmsg into `buf` (fds into `fdsOut`, laid out as recvmsg's) and call
   * back with RECEIVED and the byte count (or a negative errno as status),
   * returning to the event loop whenever the loop has work. The fd is
   * switched to blocking mode (every other call of the addon passes
   * MSG_DONTWAIT). `null` turns it off. The buffers must not be detached.
   */
  setBlockingReceive(buf: Uint8Array | null, fdsOut?: Int32Array): void;
}

export interface PollerConstructor {
  /**
   * Wraps uv_poll_t for `fd` (which libuv makes non-blocking). `cb` runs with
   * MakeCallback semantics (microtasks run after it); `status` is 0 or a
   * negative libuv error (then `events` is 0 and the watcher has stopped);
   * an exception thrown by `cb` becomes an uncaught exception.
   */
  new (fd: number, cb: (status: number, events: PollEvents, received: number) => boolean | void): PollerHandle;
}

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

export type FdType = 'socket' | 'file' | 'fifo' | 'char' | 'anon' | 'other';

export interface NativeBinding {
  // ---- sockets ----
  /**
   * AF_UNIX SOCK_STREAM, CLOEXEC|NONBLOCK, listening, its socket file at
   * `path` with exactly `mode`. Bound and chmod'ed inside a private directory
   * beside `path`, then hard-linked there: the file is never more permissive
   * than `mode`, no symlink can redirect the chmod, the umask is not touched,
   * and nothing at `path` is ever replaced (EADDRINUSE, syscall 'bind').
   * Nothing is left behind on failure.
   */
  listen(path: string, mode: number, backlog: number): number;
  /** accept4(CLOEXEC|NONBLOCK); -1 when nothing is pending (ECONNABORTED is retried). */
  accept(listenFd: number): number;
  /**
   * Blocking connect, then the fd is made NONBLOCK; CLOEXEC. Throws ENOENT,
   * ECONNREFUSED... With `wait` false the connect never blocks: a listener
   * with a full backlog makes it throw EAGAIN.
   */
  connect(path: string, wait?: boolean): number;
  /** AF_UNIX SOCK_STREAM pair, NONBLOCK|CLOEXEC. */
  socketpair(): [number, number];
  /**
   * Non-blocking recvmsg into buf[offset, offset+length) with MSG_CMSG_CLOEXEC
   * and room for `fdsOut.length - 2` fds (at most 253). Returns bytes read, 0 on
   * EOF, -1 on EAGAIN. Always writes fdsOut[0] = fds received, fdsOut[1] =
   * flags (bit 1: fds were lost to MSG_CTRUNC or did not fit; extras are
   * closed), fds in fdsOut[2..]. Throws on other errors (ECONNRESET...).
   */
  recvmsg(fd: number, buf: Uint8Array, offset: number, length: number, fdsOut: Int32Array): number;
  /**
   * MSG_NOSIGNAL|MSG_DONTWAIT sendmsg of buf[offset, offset+length) with `fds`
   * in one SCM_RIGHTS message (fds need length >= 1: EINVAL otherwise).
   * Returns bytes sent (possibly partial), -1 on EAGAIN; throws EPIPE etc.
   */
  sendmsg(fd: number, buf: Uint8Array, offset: number, length: number, fds: readonly number[] | null): number;
  /** how: 0 RD, 1 WR, 2 RDWR; ENOTCONN is ignored. */
  shutdown(fd: number, how: 0 | 1 | 2): void;
  /** close(2); EINTR ignored (the fd is released anyway on Linux). */
  close(fd: number): void;
  /** F_DUPFD_CLOEXEC. */
  dup(fd: number): number;
  setNonBlocking(fd: number, on: boolean): void;
  /** SO_PEERCRED of a connected AF_UNIX socket. */
  peerCred(fd: number): PeerCred;
  /** From fstat: memfd/shm are 'file'; eventfd and other anon inodes 'anon'; dirs/blockdevs 'other'. */
  fdType(fd: number): FdType;
  /** SO_SNDBUF / SO_RCVBUF in bytes (0 leaves one as it is); the kernel caps them at wmem_max / rmem_max. */
  setBufferSizes(fd: number, send: number, recv: number): void;
  /**
   * flock(2) without waiting: op 0 unlocks, 1 locks shared, 2 exclusive.
   * True when held; false when another open file description holds a
   * conflicting lock. The lock ends with the last close of the description.
   */
  flock(fd: number, op: 0 | 1 | 2): boolean;

  // ---- poller ----
  Poller: PollerConstructor;
  readonly READABLE: 1;
  readonly WRITABLE: 2;
  readonly DISCONNECT: 4;
  /** Poller callback event: its blocking receive delivered bytes. */
  readonly RECEIVED: 0x100;

  // ---- eventfd ----
  /**
   * eventfd(initval, EFD_CLOEXEC | flags). `flags` uses this addon's values:
   * EFD_NONBLOCK = 1, EFD_SEMAPHORE = 2 (not the kernel's).
   */
  eventfd(initval: number, flags: number): number;
  /** Reads the counter (1n per read in semaphore mode); -1n on EAGAIN. Blocks on a blocking eventfd at 0. */
  eventfdRead(fd: number): bigint;
  /** Adds value (0 .. 2^64-2); false on EAGAIN (would overflow, non-blocking). */
  eventfdWrite(fd: number, value: bigint | number): boolean;
  /** Adds 1 to a non-blocking eventfd with one write(); false when its counter is full. */
  eventfdSignal(fd: number): boolean;
  /** O_NONBLOCK on the fd's open file description (one fcntl). */
  isNonBlocking(fd: number): boolean;
  /**
   * A dup of a blocking eventfd, owned by the addon's writer thread: writes to
   * it never happen on a JS thread (a client can make them block).
   */
  eventfdDeferredOpen(fd: number): number;
  /** Queues "add 1" on a dup from eventfdDeferredOpen; the writer thread makes the write. */
  eventfdDeferredSignal(dupFd: number): void;
  /** Closes a dup from eventfdDeferredOpen once the writes queued before it are done. */
  eventfdDeferredClose(dupFd: number): void;
  /** Test hook: the writer thread fills each counter just before its write (so that write blocks). */
  eventfdTestFill(on: boolean): void;
  readonly EFD_NONBLOCK: 1;
  readonly EFD_SEMAPHORE: 2;

  // ---- memfd / files ----
  /** memfd_create(name, MFD_CLOEXEC [| MFD_ALLOW_SEALING]). */
  /** glibc M_MMAP_THRESHOLD (at most 32 MiB) and M_TRIM_THRESHOLD; process-wide. False if refused. */
  tuneAllocator(mmapThreshold: number, trimThreshold: number): boolean;
  memfdCreate(name: string, allowSealing: boolean): number;
  ftruncate(fd: number, size: number | bigint): void;
  /** st_size; throws EOVERFLOW above 2^53-1. */
  fstatSize(fd: number): number;
  /** fcntl(F_ADD_SEALS). */
  addSeals(fd: number, seals: number): void;
  /** fcntl(F_GET_SEALS); -1 for fds that do not support sealing (EINVAL). Other errors throw. */
  getSeals(fd: number): number;
  readonly F_SEAL_SEAL: number;
  readonly F_SEAL_SHRINK: number;
  readonly F_SEAL_GROW: number;
  readonly F_SEAL_WRITE: number;

  // ---- mmap ----
  /**
   * MAP_SHARED mapping as an external ArrayBuffer. `offset` must be page
   * aligned (EINVAL; never rounded); 0 < length <= 2^32 (Node 20's external
   * buffer limit, ERANGE above: map large regions in windows). prot: a
   * non-empty mask of PROT_READ | PROT_WRITE; PROT_READ is always added.
   * For regular files (memfd, shm) the range must lie inside the file (ENXIO).
   * Writing through a read-only mapping, or touching pages after the file was
   * shrunk, kills the process (SIGSEGV/SIGBUS): seal untrusted fds
   * (F_SEAL_SHRINK) or trust their owner. postMessage copies such buffers; a
   * worker must mmap the fd itself.
   */
  mmap(fd: number, offset: number | bigint, length: number, prot: number): ArrayBuffer;
  /**
   * Detaches `ab` (views then have length 0) and unmaps it. A second call is a
   * no-op; the GC finalizer knows it is unmapped. EINVAL for a buffer not from mmap().
   */
  munmap(ab: ArrayBuffer): void;
  /**
   * Revokes a mapping that views may still use from outside JS (a readv in
   * the thread pool): detaches `ab` like munmap() and unmaps it, except that
   * the pages of each `keep` range (flat [offset, length, ...]: page-aligned,
   * sorted, disjoint, inside the mapping) are replaced in place by an
   * inaccessible placeholder (PROT_NONE, MAP_FIXED), so a late access fails
   * (EFAULT from a syscall) and never reaches memory mapped later. Returns a
   * token per range for releasePlaceholder(). EINVAL for a detached buffer
   * or misaligned ranges.
   */
  revoke(ab: ArrayBuffer, keep: readonly number[]): number[];
  /** Unmaps a placeholder left by revoke() (unknown tokens are ignored). */
  releasePlaceholder(token: number): void;
  /** Placeholders not released yet (process-wide). */
  placeholderCount(): number;
  /** msync(MS_SYNC) of [offset, offset+length) of the mapping (start rounded down to a page). */
  msync(ab: ArrayBuffer, offset: number, length: number): void;
  /** madvise(MADV_DONTDUMP) over the whole mapping. */
  madviseDontDump(ab: ArrayBuffer): void;
  pageSize(): number;
  readonly PROT_READ: 1;
  readonly PROT_WRITE: 2;
}

/** The extra properties of an Error thrown by a failing syscall. */
export interface NativeErrorShape {
  code: string;
  errno: number;
  syscall: string;
}

/** True for a syscall error from the addon (optionally with that errno name). */
export function isNativeError(e: unknown, code?: string): e is Error & NativeErrorShape {
  if (!(e instanceof Error)) return false;
  const x = e as Error & Partial<NativeErrorShape>;
  if (typeof x.code !== 'string' || typeof x.errno !== 'number' || typeof x.syscall !== 'string') return false;
  return code === undefined || x.code === code;
}

/** The package root: nearest ancestor of `start` holding binding.gyp and package.json. */
export function findPackageRoot(start: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  for (;;) {
    if (existsSync(join(dir, 'binding.gyp')) && existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`vfio_user_native: no package root (binding.gyp) above ${start}`);
    dir = up;
  }
}

/** File name of the addon node-gyp builds. */
export const ADDON_FILE = 'vfio_user_native.node';

/**
 * File name of the prebuilt addon in prebuilds/<platform>-<arch>/: N-API, so
 * one file serves every Node version; glibc, so musl systems skip it. The tags
 * follow prebuildify's naming, which node-gyp-build also reads.
 */
export const PREBUILD_FILE = 'vfio_user_native.napi.glibc.node';

/** The files the addon is loaded from, in the order they are tried. */
export function nativeAddonCandidates(root: string = findPackageRoot()): string[] {
  const override = process.env.VFIO_USER_NATIVE_PATH;
  if (override !== undefined && override !== '') return [override];
  return [
    join(root, 'build', 'Release', ADDON_FILE),
    join(root, 'build', 'Debug', ADDON_FILE),
    join(root, 'prebuilds', `${process.platform}-${process.arch}`, PREBUILD_FILE),
  ];
}

let loadedFrom: string | undefined;

/** Where the addon was loaded from. */
export function nativeAddonPath(): string {
  return loadedFrom!;
}

function load(): NativeBinding {
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const path of nativeAddonCandidates()) {
    if (!existsSync(path)) {
      failures.push(`${path}: not found`);
      continue;
    }
    try {
      const binding = require(path) as NativeBinding;
      loadedFrom = path;
      return binding;
    } catch (e) {
      failures.push(`${path}: ${(e as Error).message}`);
    }
  }
  throw new Error(
    'vfio_user_native: no loadable addon. Build it from source with "npm rebuild vfio-user-ts" ' +
      '(in a clone: "npm run build:addon"; needs g++, make and python3). Tried:\n  ' +
      failures.join('\n  '),
  );
}

/** What a non-socket at a socket path is, for messages. */
function fileKind(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a file';
}

/** A syscall error about a socket path, re-made to name the path (and what is there when it is no socket). */
function pathError(e: unknown, path: string): unknown {
  if (!isNativeError(e)) return e;
  let kind = '';
  try {
    const st = lstatSync(path);
    if (!st.isSocket()) kind = `: the path is ${fileKind(st)}, not a socket`;
  } catch {
    // nothing there: the errno (ENOENT) says so
  }
  const detail = e.message.startsWith(`${e.syscall}: `) ? e.message.slice(e.syscall.length + 2) : e.message;
  const err = new Error(`${e.syscall} ${path}: ${detail}${kind}`, { cause: e }) as Error & NativeErrorShape & { path: string };
  err.code = e.code;
  err.errno = e.errno;
  err.syscall = e.syscall;
  err.path = path;
  return err;
}

function withPathErrors(binding: NativeBinding): NativeBinding {
  const { connect, listen } = binding;
  binding.connect = (path) => {
    try {
      return connect(path);
    } catch (e) {
      throw pathError(e, path);
    }
  };
  binding.listen = (path, mode, backlog) => {
    try {
      return listen(path, mode, backlog);
    } catch (e) {
      throw pathError(e, path);
    }
  };
  return binding;
}

export const native: NativeBinding = withPathErrors(load());
