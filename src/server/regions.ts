import { native } from '../native/binding.js';
import { Errno } from '../protocol/errno.js';
import { ProtocolError } from '../protocol/errors.js';
import { RegionCapId, RegionInfoFlags } from '../protocol/constants.js';
import type { RegionDescription as WireRegion } from '../protocol/region-info.js';
import { VfioUserError } from '../protocol/errors.js';
import type { MmapArea, RegionReadHandler, RegionReadIntoHandler, RegionSpec, RegionWriteFromHandler, RegionWriteHandler } from './device.js';

const F_SEAL_SEAL = 0x1;
const F_SEAL_SHRINK = 0x2;
const F_SEAL_GROW = 0x4;

/** A doorbell the client may turn into an ioeventfd (GET_REGION_IO_FDS). */
export interface IoEventFd {
  /** Offset in the region of the doorbell. */
  offset: number;
  /** Access size that triggers it; 0 = any. */
  size: number;
  /** The eventfd. */
  fd: number;
  /** Only this written value triggers it (KVM DATAMATCH). */
  datamatch?: bigint;
  /** KVM flags: DATAMATCH is derived from datamatch; PIO for I/O BARs. */
  flags: number;
}

/** Range handler that takes over part of a region (the MSI-X table and PBA). */
export interface RegionOverlay {
  offset: number;
  size: number;
  read(offset: number, count: number): Uint8Array;
  write(offset: number, data: Uint8Array): void;
}

/** One device region as the server keeps it. */
export class Region {
  /** Region index (0-8). */
  readonly index: number;
  /** Bytes (0: the region does not exist). */
  readonly size: number;
  /** Reads are allowed. */
  readonly readable: boolean;
  /** Writes are allowed. */
  readonly writable: boolean;
  /** memfd behind a shared region, else -1. */
  readonly fd: number;
  /** The parts a client may mmap (shared regions). */
  readonly mmapAreas: readonly MmapArea[];
  /** The device's view of a shared region's bytes (same memory the client maps). */
  readonly memory: Uint8Array | null;
  private readonly onRead: RegionReadHandler | undefined;
  private readonly onWrite: RegionWriteHandler | undefined;
  private readonly onReadInto: RegionReadIntoHandler | undefined;
  private readonly onWriteFrom: RegionWriteFromHandler | undefined;
  /** Doorbells registered with DeviceContext.addIoEventFd. */
  readonly ioeventfds: IoEventFd[] = [];
  /** @internal */
  readonly overlays: RegionOverlay[] = [];

  constructor(index: number, spec: RegionSpec | undefined) {
    this.index = index;
    this.size = spec?.size ?? 0;
    this.readable = spec ? spec.readable ?? true : false;
    this.writable = spec ? spec.writable ?? true : false;
    this.onRead = spec?.read;
    this.onWrite = spec?.write;
    this.onReadInto = spec?.readInto;
    this.onWriteFrom = spec?.writeFrom;
    if (!Number.isSafeInteger(this.size) || this.size < 0) throw new VfioUserError('ERR_VFIO_USER_INVALID_DEVICE', `region ${index}: bad size`);
    if (spec?.shared && this.size > 0) {
      const areas = typeof spec.shared === 'object' && spec.shared.mmapAreas ? spec.shared.mmapAreas : [{ offset: 0, size: this.size }];
      const page = native.pageSize();
      for (const a of areas) {
        if (a.offset % page !== 0 || a.size % page !== 0 || a.size <= 0 || a.offset + a.size > this.size) {
          throw new VfioUserError('ERR_VFIO_USER_INVALID_DEVICE', `region ${index}: mmap area ${a.offset}+${a.size} must be page aligned and inside the region`);
        }
      }
      this.mmapAreas = areas;
      const fd = native.memfdCreate(`vfio-user-region${index}`, true);
      native.ftruncate(fd, Math.ceil(this.size / page) * page);
      // Sealed: a client can neither shrink it (SIGBUS for us) nor grow it.
      native.addSeals(fd, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
      this.fd = fd;
      this.memory = new Uint8Array(native.mmap(fd, 0, Math.ceil(this.size / page) * page, 3), 0, this.size);
    } else {
      this.fd = -1;
      this.mmapAreas = [];
      this.memory = null;
    }
  }

  /** True when the region exists (size > 0). */
  get configured(): boolean {
    return this.size > 0;
  }

  /** What GET_REGION_INFO reports. */
  wire(): WireRegion {
    let flags = 0;
    if (this.readable) flags |= RegionInfoFlags.READ;
    if (this.writable) flags |= RegionInfoFlags.WRITE;
    const hasFd = this.fd >= 0;
    return {
      index: this.index,
      flags,
      size: BigInt(this.size),
      offset: 0n,
      hasFd,
      caps: hasFd
        ? [{ id: RegionCapId.SPARSE_MMAP, version: 1, areas: this.mmapAreas.map((a) => ({ offset: BigInt(a.offset), size: BigInt(a.size) })) }]
        : [],
    };
  }

  private overlayAt(offset: number, count: number): RegionOverlay | undefined {
    for (const o of this.overlays) {
      if (offset >= o.offset && offset + count <= o.offset + o.size) return o;
      if (offset < o.offset + o.size && o.offset < offset + count) {
        throw new ProtocolError(Errno.EINVAL, `access ${offset}+${count} straddles a library-served range`);
      }
    }
    return undefined;
  }

  /** Serves a read. Range already checked by the caller. */
  read(offset: number, count: number): Uint8Array | Promise<Uint8Array> {
    if (!this.readable) throw new ProtocolError(Errno.EINVAL, `region ${this.index} is not readable`);
    const ov = this.overlayAt(offset, count);
    if (ov) return ov.read(offset - ov.offset, count);
    if (this.onReadInto) {
      const out = new Uint8Array(count);
      this.onReadInto(offset, count, out, 0);
      return out;
    }
    if (this.onRead) return this.onRead(offset, count);
    if (this.memory) return this.memory.slice(offset, offset + count);
    throw new ProtocolError(Errno.EINVAL, `region ${this.index} has no read handler`);
  }

  /**
   * Serves a read straight into `out` at `at` (the reply being built): no
   * allocation unless the device's `read` callback makes one. Returns null
   * when done, or the device's pending promise when its callback is async
   * (the caller then finishes the reply when it settles). Range already
   * checked by the caller.
   */
  readInto(offset: number, count: number, out: Uint8Array, at: number): null | Promise<Uint8Array> {
    if (!this.readable) throw new ProtocolError(Errno.EINVAL, `region ${this.index} is not readable`);
    if (this.overlays.length > 0) {
      const ov = this.overlayAt(offset, count);
      if (ov) {
        out.set(ov.read(offset - ov.offset, count), at);
        return null;
      }
    }
    if (this.onReadInto) {
      this.onReadInto(offset, count, out, at);
      return null;
    }
    if (this.onRead) {
      const r = this.onRead(offset, count);
      if (!(r instanceof Uint8Array)) return r;
      if (r.length !== count) throw new ProtocolError(Errno.EIO, `region ${this.index} read returned ${r.length} of ${count} bytes`);
      copySmall(r, 0, out, at, count);
      return null;
    }
    if (this.memory) {
      copySmall(this.memory, offset, out, at, count);
      return null;
    }
    throw new ProtocolError(Errno.EINVAL, `region ${this.index} has no read handler`);
  }

  /** Serves a write. Range already checked by the caller. */
  write(offset: number, data: Uint8Array): void | Promise<void> {
    if (!this.writable) throw new ProtocolError(Errno.EINVAL, `region ${this.index} is not writable`);
    const ov = this.overlayAt(offset, data.length);
    if (ov) return ov.write(offset - ov.offset, data);
    if (this.onWriteFrom) return this.onWriteFrom(offset, data, 0, data.length);
    if (this.onWrite) return this.onWrite(offset, data);
    if (this.memory) {
      this.memory.set(data, offset);
      return;
    }
    throw new ProtocolError(Errno.EINVAL, `region ${this.index} has no write handler`);
  }

  /**
   * Serves a write of `src[at .. at + count)` (the receive buffer, reused
   * afterwards): straight from it when the device takes writeFrom or the
   * region is plain shared memory, else from a copy handed to its `write`
   * callback (which may keep it, or finish later: its promise is returned).
   * Range already checked by the caller.
   */
  writeFrom(offset: number, src: Uint8Array, at: number, count: number): void | Promise<void> {
    if (!this.writable) throw new ProtocolError(Errno.EINVAL, `region ${this.index} is not writable`);
    if (this.overlays.length === 0) {
      if (this.onWriteFrom) return this.onWriteFrom(offset, src, at, count);
      if (!this.onWrite && this.memory) return copySmall(src, at, this.memory, offset, count);
    }
    return this.write(offset, src.slice(at, at + count));
  }

  /** Frees the memfd and mapping (device destroyed). */
  destroy(): void {
    if (this.memory) native.munmap(this.memory.buffer as ArrayBuffer);
    if (this.fd >= 0) native.close(this.fd);
    for (const e of this.ioeventfds.splice(0)) native.close(e.fd);
  }
}

/**
 * Copies `n` bytes. Register-sized copies go byte by byte: a subarray for
 * TypedArray.set would allocate a view per access.
 */
function copySmall(src: Uint8Array, from: number, dst: Uint8Array, to: number, n: number): void {
  if (n <= 16) {
    for (let i = 0; i < n; i++) dst[to + i] = src[from + i]!;
  } else {
    dst.set(src.subarray(from, from + n), to);
  }
}
