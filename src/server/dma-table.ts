import { native } from '../native/binding.js';
import { Errno } from '../protocol/errno.js';
import { ProtocolError } from '../protocol/errors.js';
import { DirtyBitmap } from './dirty.js';
import { GuestMapping } from './dma-mapping.js';

const U64_LIMIT = 1n << 64n;

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
  /** The mmapped windows and the views on them; null for regions without an fd. */
  readonly mapping: GuestMapping | null;
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
    this.mapping =
      args.fd === null
        ? null
        : new GuestMapping({ fd: args.fd, fileOffset: args.offset, size: Number(args.size), readable: args.readable, writable: args.writable, pageSize });
  }

  get mapped(): boolean {
    return this.fd !== null;
  }

  info(): DmaRegionInfo {
    return { iova: this.iova, size: this.size, readable: this.readable, writable: this.writable, mapped: this.mapped };
  }

  /**
   * Zero-copy bytes for [offset, offset+length) of the region, or null when
   * the range crosses a window boundary (only in regions over 4 GiB).
   */
  bytes(offset: number, length: number): Uint8Array | null {
    if (this.released || !this.mapping) return null;
    return this.mapping.bytes(offset, length);
  }

  /** Copies out, across windows if needed. */
  copyOut(offset: number, dst: Uint8Array): void {
    this.mapping!.copyOut(offset, dst);
  }

  copyIn(offset: number, src: Uint8Array): void {
    this.mapping!.copyIn(offset, src);
  }

  markDirty(offset: number, length: number): void {
    this.dirty?.mark(offset, length);
  }

  /**
   * Waits until the device released every view of this region (read or
   * write), at most `timeoutMs`. Resolves false when views are still held:
   * release() then revokes them.
   */
  waitForViews(timeoutMs: number): Promise<boolean> {
    return this.mapping ? this.mapping.waitForViews(timeoutMs) : Promise.resolve(true);
  }

  /**
   * Unmaps and closes the fd. Views still held read as empty from now on,
   * and their pages become inaccessible placeholders until released (see
   * GuestMapping.unmap). Returns the number of views revoked.
   */
  release(): number {
    if (this.released) return 0;
    this.released = true;
    const revoked = this.mapping?.unmap() ?? 0;
    if (this.fd !== null) {
      try {
        native.close(this.fd);
      } catch {
        // already closed
      }
    }
    this.heldWritable.clear();
    return revoked;
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
  /** Told when dirty logging starts or stops (worker channels publish it to their workers). */
  private readonly loggingListeners = new Set<(on: boolean) => void>();

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

  /** Registers a listener for dirty logging turning on or off; returns its removal. */
  addLoggingListener(fn: (on: boolean) => void): () => void {
    this.loggingListeners.add(fn);
    return () => this.loggingListeners.delete(fn);
  }

  startLogging(pageSize: number): void {
    this.loggingPageSize = pageSize;
    for (const fn of this.loggingListeners) fn(true);
    for (const r of this.regions) if (r.mapped && !r.dirty) r.dirty = new DirtyBitmap(r.size, pageSize);
  }

  stopLogging(): void {
    this.loggingPageSize = null;
    for (const fn of this.loggingListeners) fn(false);
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
