// Guest memory access for the controller and PRP (Physical Region Page)
// walking. The I/O path walks a command's PRPs with a PrpCursor (one merged
// guest range at a time, list entries read in place, nothing allocated);
// admin commands and the asynchronous path turn them into a list of ranges
// and zero-copy views of the client's mapped RAM.
import type { DeviceContext } from '../../src/server/context.js';
import type { DmaView, IovaLike } from '../../src/server/dma.js';
import { u64n, type GuestWindows } from './guest-window.js';
import { NvmeStatus } from './queues.js';
import { SC } from './registers.js';

export const PAGE_SIZE = 4096;

/** Synchronous access to fd-backed guest memory (QEMU maps its RAM with memfds). */
export interface GuestMem {
  readSync(iova: IovaLike, len: number): Uint8Array;
  writeSync(iova: IovaLike, data: Uint8Array): void;
  view(iova: IovaLike, len: number, write: boolean): DmaView;
}

export function contextMem(ctx: DeviceContext): GuestMem {
  return {
    readSync: (iova, len) => ctx.dma.readSync(iova, len),
    writeSync: (iova, data) => ctx.dma.writeSync(iova, data),
    view: (iova, len, write) => ctx.dma.view(iova, len, { write }),
  };
}

export interface Segment {
  iova: bigint;
  len: number;
}

const P = BigInt(PAGE_SIZE);

function readList(mem: GuestMem, at: bigint, count: number): BigUint64Array {
  let raw: Uint8Array;
  try {
    raw = mem.readSync(at, count * 8);
  } catch (e) {
    throw new NvmeStatus(SC.DATA_XFER_ERROR, `PRP list at 0x${at.toString(16)}: ${(e as Error).message}`);
  }
  const out = new BigUint64Array(count);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.length);
  for (let i = 0; i < count; i++) out[i] = dv.getBigUint64(i * 8, true);
  return out;
}

/** The guest ranges of a `len`-byte transfer described by PRP1/PRP2 (4 KiB pages). */
export function prpSegments(mem: GuestMem, prp1n: number, prp2n: number, len: number): Segment[] {
  if (prp1n < 0 || (len > PAGE_SIZE - (prp1n % PAGE_SIZE) && prp2n < 0)) throw new NvmeStatus(SC.DATA_XFER_ERROR, 'PRP beyond guest memory');
  const prp1 = BigInt(prp1n);
  const prp2 = prp2n < 0 ? 0n : BigInt(prp2n);
  const segs: Segment[] = [];
  const push = (iova: bigint, n: number): void => {
    const last = segs[segs.length - 1];
    if (last && last.iova + BigInt(last.len) === iova) last.len += n;
    else segs.push({ iova, len: n });
  };
  if ((prp1 & 3n) !== 0n) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'PRP1 not dword aligned');
  const first = Math.min(len, PAGE_SIZE - Number(prp1 % P));
  push(prp1, first);
  let left = len - first;
  if (left === 0) return segs;
  if (left <= PAGE_SIZE) {
    if (prp2 % P !== 0n) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'PRP2 entry not page aligned');
    push(prp2, left);
    return segs;
  }
  // PRP2 points to a list; the last entry of a full list page chains to the next page.
  let list = prp2;
  if ((list & 7n) !== 0n) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'PRP list pointer not qword aligned');
  while (left > 0) {
    const slots = Number((P - (list % P)) / 8n);
    const needed = Math.ceil(left / PAGE_SIZE);
    const chained = needed > slots;
    const n = chained ? slots : needed;
    const entries = readList(mem, list, n);
    const data = chained ? n - 1 : n;
    for (let i = 0; i < data; i++) {
      const e = entries[i]!;
      if (e % P !== 0n) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, `PRP entry 0x${e.toString(16)} not page aligned`);
      const take = Math.min(left, PAGE_SIZE);
      push(e, take);
      left -= take;
    }
    if (chained) {
      list = entries[n - 1]!;
      if ((list & 7n) !== 0n) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'chained PRP list pointer not qword aligned');
    }
  }
  return segs;
}

/** Zero-copy views of every segment; release them all when the transfer is done. */
export function viewsOf(mem: GuestMem, segs: Segment[], write: boolean): DmaView[] {
  const views: DmaView[] = [];
  let at = 0n;
  try {
    for (const s of segs) {
      at = s.iova;
      try {
        views.push(mem.view(s.iova, s.len, write));
      } catch {
        // A merged range may cross from one DMA region into the next: page by page.
        for (let off = 0; off < s.len; ) {
          const iova = s.iova + BigInt(off);
          at = iova;
          const n = Math.min(s.len - off, PAGE_SIZE - Number(iova % P));
          views.push(mem.view(iova, n, write));
          off += n;
        }
      }
    }
  } catch (e) {
    for (const v of views) v.release();
    throw new NvmeStatus(SC.DATA_XFER_ERROR, `DMA at 0x${at.toString(16)}: ${(e as Error).message}`);
  }
  return views;
}

/** Copies `data` into the guest ranges of a PRP pair (small admin payloads). */
export function writePrp(mem: GuestMem, prp1: number, prp2: number, data: Uint8Array): void {
  let off = 0;
  for (const s of prpSegments(mem, prp1, prp2, data.length)) {
    try {
      mem.writeSync(s.iova, data.subarray(off, off + s.len));
    } catch (e) {
      throw new NvmeStatus(SC.DATA_XFER_ERROR, `DMA write 0x${s.iova.toString(16)}: ${(e as Error).message}`);
    }
    off += s.len;
  }
}

/** Reads `len` bytes from the guest ranges of a PRP pair. */
export function readPrp(mem: GuestMem, prp1: number, prp2: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let off = 0;
  for (const s of prpSegments(mem, prp1, prp2, len)) {
    try {
      out.set(mem.readSync(s.iova, s.len), off);
    } catch (e) {
      throw new NvmeStatus(SC.DATA_XFER_ERROR, `DMA read 0x${s.iova.toString(16)}: ${(e as Error).message}`);
    }
    off += s.len;
  }
  return out;
}

/**
 * Walks the data pointer of a `len`-byte transfer (PRP1, PRP2 or a chain of
 * PRP list pages, 4 KiB memory pages) one merged guest range at a time:
 * after each next() returning true, [addr, addr+len) is the next range.
 * List entries are read in place through the windows; one cursor is reused
 * for every command. Throws NvmeStatus on a malformed pointer.
 */
export class PrpCursor {
  addr = 0;
  len = 0;
  private left = 0;
  private prp2 = 0;
  /** 0: PRP1 next; 1: PRP2 as data next; 2: list entries; 3: done. */
  private stage = 3;
  /** The stage after PRP1. */
  private then = 3;
  private list = 0;
  private prp1 = 0;
  /** A page taken from the walk that did not merge into the previous range. */
  private held = -1;

  constructor(
    private readonly win: GuestWindows,
    private readonly mem: GuestMem,
  ) {}

  start(prp1: number, prp2: number, len: number): void {
    if (prp1 < 0) throw new NvmeStatus(SC.DATA_XFER_ERROR, 'PRP1 beyond guest memory');
    if (prp1 % 4 !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'PRP1 not dword aligned');
    this.prp1 = prp1;
    this.addr = prp1;
    this.len = 0;
    this.left = len;
    this.prp2 = prp2;
    this.list = prp2;
    this.held = -1;
    this.stage = 0;
    this.then = 3;
    const first = PAGE_SIZE - (prp1 % PAGE_SIZE);
    if (len > first) {
      const rest = len - first;
      this.then = rest <= PAGE_SIZE ? 1 : 2;
      if (prp2 < 0) throw new NvmeStatus(SC.DATA_XFER_ERROR, 'PRP2 beyond guest memory');
      if (rest <= PAGE_SIZE) {
        if (prp2 % PAGE_SIZE !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'PRP2 entry not page aligned');
      } else if (prp2 % 8 !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'PRP list pointer not qword aligned');
    }
  }

  /** Advances to the next range, merging pages that are contiguous in guest memory. */
  next(): boolean {
    if (this.left === 0) return false;
    let addr = 0;
    let len = 0;
    while (this.left > 0) {
      const page = this.page();
      const n = Math.min(this.left, PAGE_SIZE - (page % PAGE_SIZE));
      if (len === 0) addr = page;
      else if (addr + len !== page) {
        this.pushBack(page);
        break;
      }
      len += n;
      this.left -= n;
    }
    this.addr = addr;
    this.len = len;
    return true;
  }

  private pushBack(page: number): void {
    this.held = page;
  }

  /** The next page-sized piece's start address. */
  private page(): number {
    if (this.held >= 0) {
      const p = this.held;
      this.held = -1;
      return p;
    }
    switch (this.stage) {
      case 0:
        this.stage = this.then;
        return this.prp1;
      case 1:
        this.stage = 3;
        return this.prp2;
      case 2: {
        // The last slot of a list page chains to the next page when more than one entry is still needed.
        let at = this.list;
        let e = this.entry(at);
        if ((at + 8) % PAGE_SIZE === 0 && this.left > PAGE_SIZE) {
          if (e % 8 !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'chained PRP list pointer not qword aligned');
          at = e;
          e = this.entry(at);
        }
        if (e % PAGE_SIZE !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, `PRP entry 0x${e.toString(16)} not page aligned`);
        this.list = at + 8;
        return e;
      }
      default:
        throw new NvmeStatus(SC.DATA_XFER_ERROR, 'PRP walk overran its transfer');
    }
  }

  private entry(at: number): number {
    let v: number;
    if (this.win.locate(at, 8, false)) v = u64n(this.win.dv, this.win.offset);
    else {
      let raw: Uint8Array;
      try {
        raw = this.mem.readSync(at, 8);
      } catch (e) {
        throw new NvmeStatus(SC.DATA_XFER_ERROR, `PRP list at 0x${at.toString(16)}: ${(e as Error).message}`);
      }
      v = u64n(new DataView(raw.buffer, raw.byteOffset, 8), 0);
    }
    if (v < 0) throw new NvmeStatus(SC.DATA_XFER_ERROR, 'PRP entry beyond guest memory');
    return v;
  }
}
