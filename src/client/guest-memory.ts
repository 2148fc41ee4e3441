import { native } from '../native/binding.js';
import { allocBitmap, bitmapConvert, bitmapMarkRange } from '../protocol/dirty-bitmap.js';

/** Page size the client tracks its own (message-DMA) dirty pages at. */
export const CLIENT_DIRTY_PAGE_SIZE = 4096;

/** How to create GuestMemory (see VfioUserClient.createGuestMemory). */
export interface GuestMemoryOptions {
  /** Where the server sees it. */
  iova: bigint | number;
  /** Bytes; a multiple of 4096, at most 4 GiB (one mapping). */
  size: number;
  /**
   * Pass the memfd with DMA_MAP, so the server mmaps it and reaches it
   * directly. Without it, the server must use DMA_READ/DMA_WRITE messages,
   * which this client serves from the same memory.
   */
  useFd: boolean;
  /** Map for device reads only (DMA_MAP flags READ). Default false. */
  readOnly?: boolean;
  /** memfd name (shows in /proc/PID/fd). */
  name?: string;
  /**
   * Share existing memory instead of creating a memfd: this fd is dup'ed,
   * so the new GuestMemory owns its own reference (used to hand a source's
   * guest memory to a migration destination).
   */
  fromFd?: number;
}

/**
 * Guest memory the client owns: a memfd mapped into this process. `bytes`
 * is the client's view (what a VM's RAM would be); the device reaches the
 * same bytes through its own mapping (useFd) or through DMA messages the
 * client serves.
 */
export class GuestMemory {
  /** Where the server sees it. */
  readonly iova: bigint;
  /** Bytes. */
  readonly size: number;
  /** Mapped with its fd (the server reaches it directly). */
  readonly useFd: boolean;
  /** Mapped for device reads only. */
  readonly readOnly: boolean;
  /** memfd backing the memory; -1 once freed. */
  fd: number;
  private buffer: ArrayBuffer | null;
  /** Client's view of the memory (length 0 once freed). */
  bytes: Uint8Array;
  /** True while the server has it mapped (DMA_MAP answered, no UNMAP yet). */
  mapped = false;
  private dirty: Uint8Array;
  /** Set by the client: unmaps on the server, then frees. */
  unmapHook: ((m: GuestMemory) => Promise<void>) | null = null;

  constructor(opts: GuestMemoryOptions) {
    this.iova = BigInt(opts.iova);
    this.size = opts.size;
    this.useFd = opts.useFd;
    this.readOnly = opts.readOnly ?? false;
    const page = native.pageSize();
    const fd = opts.fromFd !== undefined ? native.dup(opts.fromFd) : native.memfdCreate(opts.name ?? `vfio-user-guest-${this.iova.toString(16)}`, false);
    try {
      if (opts.fromFd === undefined) native.ftruncate(fd, Math.ceil(this.size / page) * page);
      this.buffer = native.mmap(fd, 0, Math.ceil(this.size / page) * page, native.PROT_READ | native.PROT_WRITE);
    } catch (e) {
      native.close(fd);
      throw e;
    }
    this.fd = fd;
    this.bytes = new Uint8Array(this.buffer, 0, this.size);
    this.dirty = allocBitmap(BigInt(this.size), BigInt(CLIENT_DIRTY_PAGE_SIZE));
  }

  /** True when [iova, iova+length) lies inside this memory. */
  contains(iova: bigint, length: bigint): boolean {
    return iova >= this.iova && iova + length <= this.iova + BigInt(this.size);
  }

  /** Marks bytes [offset, offset+length) dirty (the client served a DMA write there). */
  markClientDirty(offset: number, length: number): void {
    if (length > 0) bitmapMarkRange(this.dirty, BigInt(CLIENT_DIRTY_PAGE_SIZE), BigInt(offset), BigInt(length));
  }

  /**
   * Read-and-clear of the pages the client itself wrote on the server's
   * behalf (DMA_WRITE messages): the spec leaves message-based DMA to the
   * client's dirty tracking. Same bitmap format as DMA_LOGGING_REPORT (bit i
   * = page i from iova, LSB first), in pages of `pageSize` (power of two).
   */
  takeClientDirty(pageSize: number = CLIENT_DIRTY_PAGE_SIZE): Uint8Array {
    const cur = this.dirty;
    this.dirty = allocBitmap(BigInt(this.size), BigInt(CLIENT_DIRTY_PAGE_SIZE));
    if (pageSize === CLIENT_DIRTY_PAGE_SIZE) return cur;
    return bitmapConvert(cur, BigInt(this.size), BigInt(CLIENT_DIRTY_PAGE_SIZE), BigInt(pageSize));
  }

  /** DMA_UNMAP on the server (if still mapped), then frees the memory. */
  async unmap(): Promise<void> {
    if (this.unmapHook) await this.unmapHook(this);
    this.free();
  }

  /** Frees the mapping and the memfd without telling the server (the client does this on close). */
  free(): void {
    this.mapped = false;
    if (this.buffer) {
      native.munmap(this.buffer);
      this.buffer = null;
      this.bytes = new Uint8Array(0);
    }
    if (this.fd >= 0) {
      native.close(this.fd);
      this.fd = -1;
    }
  }

  /** True once free() released the memory. */
  get freed(): boolean {
    return this.buffer === null;
  }
}
