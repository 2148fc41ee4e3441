// Allocation-free access to guest memory for the controller's hot path:
// queue rings, shadow doorbells and data buffers are reached through one
// Uint8Array and one DataView per DMA region, kept across commands, and
// addresses are plain numbers (guest physical addresses below 2^53).
//
// The windows are the library's mappings themselves (DmaRegion.bytes over
// the whole region): when the client unmaps a region the library detaches
// its memory, the window's byteLength drops to 0 and the next lookup maps
// afresh. Writes are marked dirty only while dirty logging is on, through
// the region's own bitmap, so nothing is allocated per access.
import type { DeviceContext } from '../../src/server/context.js';
import type { DmaRegion } from '../../src/server/dma-table.js';

/** One fd-backed DMA region, whole. */
interface Window {
  start: number;
  end: number;
  region: DmaRegion;
  bytes: Uint8Array;
  dv: DataView;
  /** Dword view for the shadow doorbells' ordered accesses (Atomics), when aligned. */
  i32: Int32Array | null;
}

const TWO_32 = 4294967296;

/**
 * Resolves guest addresses to (bytes, dv, offset) without allocating on a
 * hit. `locate` returns false when the range is not inside one fd-backed,
 * mapped region (the caller then takes the library's slower checked path or
 * fails the command).
 */
export class GuestWindows {
  /** Result of the last successful locate(). */
  bytes: Uint8Array = new Uint8Array(0);
  dv: DataView = new DataView(new ArrayBuffer(0));
  i32: Int32Array | null = null;
  offset = 0;
  private region: DmaRegion | null = null;
  private windows: Window[] = [];

  constructor(private readonly ctx: DeviceContext) {}

  /** DMA allowed now (Bus Master Enable, not stopped for migration): one config read, no allocation. */
  get allowed(): boolean {
    if (this.ctx.migration.stopped) return false;
    return !this.ctx.options.requireBusMaster || this.ctx.config.busMasterEnabled;
  }

  /** Finds [addr, addr+len) in one region; sets bytes/dv/offset. */
  locate(addr: number, len: number, write: boolean): boolean {
    if (!(addr >= 0) || addr + len > Number.MAX_SAFE_INTEGER || !this.allowed) return false;
    const ws = this.windows;
    for (let i = 0; i < ws.length; i++) {
      const w = ws[i]!;
      if (addr >= w.start && addr + len <= w.end) {
        if (w.region.released || w.bytes.byteLength === 0) {
          ws.splice(i, 1);
          break;
        }
        if (write ? !w.region.writable : !w.region.readable) return false;
        this.bytes = w.bytes;
        this.dv = w.dv;
        this.i32 = w.i32;
        this.offset = addr - w.start;
        this.region = w.region;
        return true;
      }
    }
    return this.miss(addr, len, write);
  }

  /**
   * Sequentially consistent load of the little-endian dword at guest address
   * `addr` (4-aligned); -1 when unreachable. With store32 it orders a shadow
   * doorbell check after an EventIdx update, as the host orders its shadow
   * write before reading the EventIdx.
   */
  load32(addr: number): number {
    if (!this.locate(addr, 4, false) || !this.i32) return -1;
    return Atomics.load(this.i32, this.offset / 4) >>> 0;
  }

  /** Sequentially consistent store of a dword at guest address `addr` (4-aligned); false when unreachable. */
  store32(addr: number, v: number): boolean {
    if (!this.locate(addr, 4, true) || !this.i32) return false;
    Atomics.store(this.i32, this.offset / 4, v | 0);
    this.dirty(this.offset, 4);
    return true;
  }

  /** Marks [offset, offset+len) of the last located region dirty when logging is on. */
  dirty(offset: number, len: number): void {
    const r = this.region;
    if (r && r.dirty) r.markDirty(offset, len);
  }

  /** Drops every window (controller reset); they are looked up again on use. */
  clear(): void {
    this.windows.length = 0;
    this.region = null;
  }

  private miss(addr: number, len: number, write: boolean): boolean {
    const region = this.ctx.dmaTable.at(BigInt(addr));
    if (!region || !region.mapped || region.released) return false;
    const start = Number(region.iova);
    const size = Number(region.size);
    if (addr + len > start + size) return false;
    const bytes = region.bytes(0, size);
    if (!bytes) return false; // a region over 4 GiB mapped in windows: not on the fast path
    // Drop stale windows of released regions while we are here.
    this.windows = this.windows.filter((w) => !w.region.released && w.bytes.byteLength > 0);
    const i32 = bytes.byteOffset % 4 === 0 ? new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2) : null;
    this.windows.push({ start, end: start + size, region, bytes, dv: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), i32 });
    return this.locate(addr, len, write);
  }
}

/**
 * A little-endian u64 at `off` of `dv` as a number; -1 when it is 2^53 or
 * more (no such guest memory). -1 rather than NaN keeps fields that hold
 * addresses small integers, which V8 passes around without boxing.
 */
export function u64n(dv: DataView, off: number): number {
  const hi = dv.getUint32(off + 4, true);
  if (hi >= 0x200000) return -1;
  return hi === 0 ? dv.getUint32(off, true) : hi * TWO_32 + dv.getUint32(off, true);
}
