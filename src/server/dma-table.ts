import { native } from '../native/binding.js';
import { Errno } from '../protocol/errno.js';
import { ProtocolError } from '../protocol/errors.js';
import { DirtyBitmap } from './dirty.js';

const U64_LIMIT = 1n << 64n;
/** External ArrayBuffers top out near 4 GiB on Node 20; bigger maps use windows. */
const MAX_SINGLE_MAPPING = 0x1_0000_0000 - 0x1000;
const WINDOW_SIZE = 1 << 30;

/** What the device learns about a DMA region (map and unmap notifications). */
export interface DmaRegionInfo {
  /** Where the client mapped it. */
  iova: bigint;
  /** Bytes. */
  size: bigint;
  /** The device may read it. */
  readable: boolean;
  /** The device may write it. */
  writable: boolean;
  /** True when backed by an fd the server mmapped (zero-copy access). */
  mapped: boolean;
}

export interface DmaMapArgs {
  iova: bigint;
  size: bigint;
  /** Offset of the region in fd. */
  offset: bigint;
  readable: boolean;
  writable: boolean;
  fd: number | null;
}

/** One mapped range of guest memory. */
export class DmaRegion implements DmaRegionInfo {
  readonly iova: bigint;
  readonly size: bigint;
  readonly readable: boolean;
  readonly writable: boolean;
  readonly fileOffset: bigint;
  fd: number | null;
  /** mmap windows; windows[k] covers region bytes [k*windowSize, ...). */
  private windows: (ArrayBuffer | null)[] = [];
  private readonly windowSize: number;
  /** Region offset of the start of windows[0] relative to its page-aligned mapping. */
  private readonly lead: number;
  dirty: DirtyBitmap | null = null;
  /** Writable views currently held by the device: dirty until released. */
  readonly heldWritable = new Set<{ offset: number; length: number }>();
  released = false;

  constructor(args: DmaMapArgs, pageSize: number) {
    this.iova = args.iova;
    this.size = args.size;
    this.readable = args.readable;
    this.writable = args.writable;
    this.fileOffset = args.offset;
    this.fd = args.fd;
    this.lead = Number(args.offset % BigInt(pageSize));
    this.windowSize = Number(args.size) + this.lead <= MAX_SINGLE_MAPPING ? Number(args.size) : WINDOW_SIZE;
    if (this.fd !== null) {
      const n = Math.ceil(Number(args.size) / this.windowSize);
      this.windows = new Array<ArrayBuffer | null>(n).fill(null);
      // Map eagerly when it fits in one window, so a bad fd fails the DMA_MAP.
      if (n === 1) this.window(0);
    }
  }

  get mapped(): boolean {
    return this.fd !== null;
  }

  info(): DmaRegionInfo {
    return { iova: this.iova, size: this.size, readable: this.readable, writable: this.writable, mapped: this.mapped };
  }

  /** The ArrayBuffer of window k, mapping it on first use. */
  private window(k: number): ArrayBuffer {
    let ab = this.windows[k];
    if (ab) return ab;
    const start = k * this.windowSize;
    const len = Math.min(this.windowSize, Number(this.size) - start);
    const lead = k === 0 ? this.lead : 0;
    const fileOff = this.fileOffset + BigInt(start) - BigInt(lead);
    const prot = (this.readable ? 1 : 0) | (this.writable ? 2 : 0) || 1;
    ab = native.mmap(this.fd!, fileOff, len + lead, prot);
    this.windows[k] = ab;
    return ab;
  }

  /**
   * Zero-copy bytes for [offset, offset+length) of the region, or null when
   * the range crosses a window boundary (only in regions over 4 GiB).
   */
  bytes(offset: number, length: number): Uint8Array | null {
    if (this.fd === null || this.released) return null;
    const k = Math.floor(offset / this.windowSize);
    const inWin = offset - k * this.windowSize;
    if (inWin + length > this.windowSize) return null;
    const lead = k === 0 ? this.lead : 0;
    return new Uint8Array(this.window(k), lead + inWin, length);
  }

  /** Calls fn(bytes, at) for each window-sized piece of [offset, offset+length). */
  private eachPiece(offset: number, length: number, fn: (bytes: Uint8Array, at: number) => void): void {
    let done = 0;
    while (done < length) {
      const k = Math.floor((offset + done) / this.windowSize);
      const inWin = offset + done - k * this.windowSize;
      const n = Math.min(length - done, this.windowSize - inWin);
      fn(this.bytes(offset + done, n)!, done);
      done += n;
    }
  }

  /** Copies out, across windows if needed. */
  copyOut(offset: number, dst: Uint8Array): void {
    this.eachPiece(offset, dst.length, (b, at) => dst.set(b, at));
  }

  copyIn(offset: number, src: Uint8Array): void {
    this.eachPiece(offset, src.length, (b, at) => b.set(src.subarray(at, at + b.length)));
  }

  markDirty(offset: number, length: number): void {
    this.dirty?.mark(offset, length);
  }

  /** Unmaps (detaching every view, which then reads as length 0) and closes the fd. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const ab of this.windows) if (ab) native.munmap(ab);
    this.windows = [];
    if (this.fd !== null) {
      try {
        native.close(this.fd);
      } catch {
        // already closed
      }
    }
    this.heldWritable.clear();
  }
}

export interface DmaTableOptions {
  maxRegions: number;
  pageSize: number;
}

/**
 * The set of DMA regions the client mapped, sorted by IOVA. Enforces the
 * protocol's rules: no overlap (EEXIST, as the spec says; an identical
 * re-map is accepted as libvfio-user does, since QEMU repeats maps), exact
 * match on unmap (ENOENT), and the region limit.
 */
export class DmaTable {
  private regions: DmaRegion[] = [];
  private readonly opts: DmaTableOptions;
  /** Page size for dirty logging while it is on, else null. */
  loggingPageSize: number | null = null;

  constructor(opts: DmaTableOptions) {
    this.opts = opts;
  }

  get count(): number {
    return this.regions.length;
  }

  list(): readonly DmaRegion[] {
    return this.regions;
  }

  /**
   * Adds a region. Returns null when an identical region already exists
   * (the caller closes the new fd and replies success). Throws ProtocolError.
   */
  add(args: DmaMapArgs): DmaRegion | null {
    if (args.size === 0n) throw new ProtocolError(Errno.EINVAL, 'DMA region of size 0');
    // Offsets inside a region are JS numbers (segments, views, dirty bitmaps):
    // beyond 2^53 they stop being exact. No machine has that much memory.
    if (args.size > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(Errno.ENOSPC, 'DMA region larger than 2^53 - 1 bytes');
    if (args.iova + args.size > U64_LIMIT) throw new ProtocolError(Errno.EINVAL, 'DMA region wraps past 2^64');
    if (args.fd !== null && args.offset + args.size > U64_LIMIT) throw new ProtocolError(Errno.EINVAL, 'DMA file range wraps');
    const idx = this.lowerBound(args.iova);
    for (const j of [idx - 1, idx]) {
      const r = this.regions[j];
      if (!r) continue;
      if (r.iova === args.iova && r.size === args.size) {
        if (r.readable === args.readable && r.writable === args.writable && r.mapped === (args.fd !== null) && (args.fd === null || r.fileOffset === args.offset)) {
          return null;
        }
        throw new ProtocolError(Errno.EEXIST, `DMA region ${hex(args.iova)}+${hex(args.size)} already mapped differently`);
      }
      if (r.iova < args.iova + args.size && args.iova < r.iova + r.size) {
        throw new ProtocolError(Errno.EEXIST, `DMA region ${hex(args.iova)}+${hex(args.size)} overlaps ${hex(r.iova)}+${hex(r.size)}`);
      }
    }
    if (this.regions.length >= this.opts.maxRegions) {
      throw new ProtocolError(Errno.ENOSPC, `too many DMA regions (limit ${this.opts.maxRegions})`);
    }
    if (args.fd !== null) {
      const type = native.fdType(args.fd);
      // Guest memory is a memfd or a file (QEMU's memfd, file and shm
      // backends), or a DAX character device. Anything else is refused: a
      // block device maps fine and then SIGBUSes past its end.
      if (type !== 'file' && type !== 'char') throw new ProtocolError(Errno.EINVAL, `DMA fd is a ${type}, not a file`);
      const fileSize = native.fstatSize(args.fd);
      // A short file would SIGBUS on access: refuse it up front.
      if (BigInt(fileSize) < args.offset + args.size && type === 'file') {
        throw new ProtocolError(Errno.EINVAL, `DMA fd is ${fileSize} bytes, map needs ${args.offset + args.size}`);
      }
    }
    let region: DmaRegion;
    try {
      region = new DmaRegion(args, this.opts.pageSize);
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      throw new ProtocolError(typeof errno === 'number' && errno > 0 ? errno : Errno.EINVAL, `mmap of DMA region failed: ${(e as Error).message}`);
    }
    if (this.loggingPageSize !== null && region.mapped) region.dirty = new DirtyBitmap(region.size, this.loggingPageSize);
    this.regions.splice(idx, 0, region);
    return region;
  }

  /** Removes the region with exactly this range (not yet released). */
  remove(iova: bigint, size: bigint): DmaRegion {
    const idx = this.lowerBound(iova);
    const r = this.regions[idx];
    if (!r || r.iova !== iova || r.size !== size) {
      throw new ProtocolError(Errno.ENOENT, `no DMA region ${hex(iova)}+${hex(size)}`);
    }
    this.regions.splice(idx, 1);
    return r;
  }

  removeAll(): DmaRegion[] {
    return this.regions.splice(0);
  }

  /** Region containing iova, or undefined. */
  at(iova: bigint): DmaRegion | undefined {
    const idx = this.lowerBound(iova + 1n) - 1;
    const r = this.regions[idx];
    return r && iova >= r.iova && iova < r.iova + r.size ? r : undefined;
  }

  /**
   * Splits [iova, iova+length) into per-region pieces. Throws ProtocolError
   * ENOENT for any gap (an access never reaches outside a mapping).
   */
  segments(iova: bigint, length: number): { region: DmaRegion; offset: number; length: number; at: number }[] {
    const out: { region: DmaRegion; offset: number; length: number; at: number }[] = [];
    if (length < 0 || iova < 0n || iova + BigInt(length) > U64_LIMIT) throw new ProtocolError(Errno.EINVAL, 'bad DMA range');
    let cur = iova;
    let done = 0;
    while (done < length) {
      const r = this.at(cur);
      if (!r) throw new ProtocolError(Errno.ENOENT, `IOVA ${hex(cur)} is not mapped`);
      const off = Number(cur - r.iova);
      const n = Math.min(length - done, Number(r.size) - off);
      if (!(n > 0)) throw new ProtocolError(Errno.EFAULT, `bad DMA segment at ${hex(cur)}`);
      out.push({ region: r, offset: off, length: n, at: done });
      done += n;
      cur += BigInt(n);
    }
    return out;
  }

  startLogging(pageSize: number): void {
    this.loggingPageSize = pageSize;
    for (const r of this.regions) if (r.mapped && !r.dirty) r.dirty = new DirtyBitmap(r.size, pageSize);
  }

  stopLogging(): void {
    this.loggingPageSize = null;
    for (const r of this.regions) r.dirty = null;
  }

  /** Index of the first region with iova >= x. */
  private lowerBound(x: bigint): number {
    let lo = 0;
    let hi = this.regions.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.regions[mid]!.iova < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

export const hex = (v: bigint | number): string => '0x' + v.toString(16);
