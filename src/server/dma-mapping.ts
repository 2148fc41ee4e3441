// One fd-backed DMA region mapped into this thread: in windows when it is too
// big for one ArrayBuffer, with the views handed out on it tracked so that an
// unmap can wait for them and revoke the ones still held. Used by the main
// thread's DMA table and by worker threads alike, so both window a region the
// same way.
import { native } from '../native/binding.js';

/** External ArrayBuffers top out near 4 GiB on Node 20; bigger regions use windows. */
export const MAX_SINGLE_MAPPING = 0x1_0000_0000 - 0x1000;
/** Window size of regions that do not fit in one mapping. */
export const WINDOW_SIZE = 1 << 30;

/** Where the bytes of one mapping come from. */
export interface GuestMappingArgs {
  fd: number;
  /** Offset of the region in the fd (any alignment: the page lead is mapped too). */
  fileOffset: bigint;
  /** Region size in bytes (at most 2^53 - 1). */
  size: number;
  readable: boolean;
  writable: boolean;
  pageSize: number;
}

/** A view handed out on a mapping, until it is released. */
export interface ViewHold {
  readonly offset: number;
  readonly length: number;
}

interface Hold extends ViewHold {
  window: number;
  /** Set once the region was revoked while the view was still held. */
  placeholder: Placeholder | null;
}

interface Placeholder {
  token: number;
  holders: number;
}

/** What a mapping counts, for logs and tests. */
export interface GuestMappingStats {
  /** Windows mapped beyond the first 4 GiB of the region (their offset is >= 2^32). */
  highWindowsMapped: number;
  /** Views still held when the region was unmapped, whose pages became placeholders. */
  revokedViews: number;
}

/**
 * The mapping of one DMA region. Windows are mapped on first use (eagerly
 * when the region fits in one, so a bad fd fails the map at once); each
 * window maps from the page boundary at or below its first byte, so a file
 * offset that is not page-aligned costs a lead of a few bytes in every
 * window, not only the first.
 */
export class GuestMapping {
  readonly size: number;
  readonly windowSize: number;
  readonly stats: GuestMappingStats = { highWindowsMapped: 0, revokedViews: 0 };
  private windows: (ArrayBuffer | null)[];
  private readonly lead: number;
  private readonly holds = new Set<Hold>();
  private idleWaiters: (() => void)[] = [];
  private unmappedFlag = false;

  constructor(private readonly args: GuestMappingArgs) {
    this.size = args.size;
    this.lead = Number(args.fileOffset % BigInt(args.pageSize));
    this.windowSize = args.size + this.lead <= MAX_SINGLE_MAPPING ? args.size : WINDOW_SIZE;
    const n = Math.ceil(args.size / this.windowSize);
    this.windows = new Array<ArrayBuffer | null>(n).fill(null);
    if (n === 1) this.window(0);
  }

  /** True once unmap() ran: no bytes any more. */
  get unmapped(): boolean {
    return this.unmappedFlag;
  }

  /** Number of windows (1 for regions that fit in one mapping). */
  get windowCount(): number {
    return this.windows.length;
  }

  /** The ArrayBuffer of window k, mapping it on first use. */
  private window(k: number): ArrayBuffer {
    let ab = this.windows[k];
    if (ab) return ab;
    const start = k * this.windowSize;
    const len = Math.min(this.windowSize, this.size - start);
    // Every window starts `lead` bytes before its first region byte: the
    // file offset of region byte `start` has the same page remainder as the
    // region's own offset, since windows are whole pages long.
    const fileOff = this.args.fileOffset + BigInt(start) - BigInt(this.lead);
    const prot = (this.args.readable ? native.PROT_READ : 0) | (this.args.writable ? native.PROT_WRITE : 0) || native.PROT_READ;
    ab = native.mmap(this.args.fd, fileOff, len + this.lead, prot);
    this.windows[k] = ab;
    if (start >= 0x1_0000_0000) this.stats.highWindowsMapped++;
    return ab;
  }

  /**
   * Zero-copy bytes for [offset, offset+length), or null when the range
   * crosses a window boundary (only in regions over 4 GiB) or the region is
   * unmapped. The caller checked the range lies inside the region.
   */
  bytes(offset: number, length: number): Uint8Array | null {
    if (this.unmappedFlag) return null;
    const k = Math.floor(offset / this.windowSize);
    const inWin = offset - k * this.windowSize;
    if (inWin + length > this.windowSize) return null;
    return new Uint8Array(this.window(k), this.lead + inWin, length);
  }

  /** True when [offset, offset+length) lies in one window (a view of it is possible). */
  inOneWindow(offset: number, length: number): boolean {
    const k = Math.floor(offset / this.windowSize);
    return offset + length <= (k + 1) * this.windowSize;
  }

  /** Calls fn(bytes, at) for each window-sized piece of [offset, offset+length). */
  private eachPiece(offset: number, length: number, fn: (bytes: Uint8Array, at: number) => void): void {
    let done = 0;
    while (done < length) {
      const k = Math.floor((offset + done) / this.windowSize);
      const inWin = offset + done - k * this.windowSize;
      const n = Math.min(length - done, this.windowSize - inWin);
      const b = this.bytes(offset + done, n);
      if (!b) throw new RangeError('DMA region is unmapped');
      fn(b, done);
      done += n;
    }
  }

  /** Copies region bytes at `offset` out into dst, across windows if needed. */
  copyOut(offset: number, dst: Uint8Array): void {
    this.eachPiece(offset, dst.length, (b, at) => dst.set(b, at));
  }

  /** Copies src into the region at `offset`, across windows if needed. */
  copyIn(offset: number, src: Uint8Array): void {
    this.eachPiece(offset, src.length, (b, at) => b.set(src.subarray(at, at + b.length)));
  }

  /**
   * A tracked view: its bytes and the hold to pass to release(). Null when
   * the range crosses a window boundary or the region is unmapped.
   */
  hold(offset: number, length: number): { bytes: Uint8Array; hold: ViewHold } | null {
    const bytes = this.bytes(offset, length);
    if (!bytes) return null;
    const hold: Hold = { offset, length, window: Math.floor(offset / this.windowSize), placeholder: null };
    this.holds.add(hold);
    return { bytes, hold };
  }

  /** Ends a hold (idempotent); frees its placeholder once no revoked view needs it. */
  release(h: ViewHold): void {
    const hold = h as Hold;
    if (!this.holds.delete(hold)) return;
    const p = hold.placeholder;
    if (p && --p.holders === 0) native.releasePlaceholder(p.token);
    if (this.holds.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Views handed out and not released. */
  get heldViews(): number {
    return this.holds.size;
  }

  /**
   * Resolves true once no view is held, or false when `timeoutMs` passed
   * first (the caller then unmaps, revoking what is still held).
   */
  waitForViews(timeoutMs: number): Promise<boolean> {
    if (this.holds.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        const i = this.idleWaiters.indexOf(done);
        if (i >= 0) this.idleWaiters.splice(i, 1);
        resolve(false);
      }, timeoutMs);
      this.idleWaiters.push(done);
    });
  }

  /**
   * Unmaps every window. Views held at this point read as empty in JS, and
   * their pages are replaced by inaccessible placeholders (native.revoke):
   * an access from outside JS still in flight (a readv/writev in the thread
   * pool) fails with EFAULT instead of reaching whatever is mapped there
   * next. A placeholder goes away when the last view on it is released.
   * Returns the number of views revoked.
   */
  unmap(): number {
    if (this.unmappedFlag) return 0;
    this.unmappedFlag = true;
    const page = this.args.pageSize;
    let revoked = 0;
    for (let k = 0; k < this.windows.length; k++) {
      const ab = this.windows[k];
      if (!ab) continue;
      const held = [...this.holds].filter((h) => h.window === k);
      if (held.length === 0) {
        native.munmap(ab);
        continue;
      }
      // Page ranges (in this window's mapping) of the held views, merged.
      const ranges = held
        .map((h) => {
          const from = this.lead + h.offset - k * this.windowSize;
          const start = from - (from % page);
          const end = Math.min(Math.ceil(ab.byteLength / page) * page, Math.ceil((from + h.length) / page) * page);
          return { h, start, end };
        })
        .sort((a, b) => a.start - b.start);
      const merged: { start: number; end: number; members: Hold[] }[] = [];
      for (const r of ranges) {
        const last = merged[merged.length - 1];
        if (last && r.start <= last.end) {
          last.end = Math.max(last.end, r.end);
          last.members.push(r.h);
        } else merged.push({ start: r.start, end: r.end, members: [r.h] });
      }
      const tokens = native.revoke(ab, merged.flatMap((m) => [m.start, m.end - m.start]));
      merged.forEach((m, i) => {
        const p: Placeholder = { token: tokens[i]!, holders: m.members.length };
        for (const h of m.members) h.placeholder = p;
      });
      revoked += held.length;
    }
    this.windows = [];
    this.stats.revokedViews += revoked;
    for (const w of this.idleWaiters.splice(0)) w();
    return revoked;
  }
}
