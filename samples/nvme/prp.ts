// Guest memory access for the controller and PRP (Physical Region Page)
// walking: a command's data pointer becomes a list of guest ranges, merged
// where contiguous, and then zero-copy views of the client's mapped RAM.
import type { DeviceContext } from '../../src/server/context.js';
import type { DmaView } from '../../src/server/dma.js';
import { NvmeStatus } from './queues.js';
import { SC } from './registers.js';

export const PAGE_SIZE = 4096;

/** Synchronous access to fd-backed guest memory (QEMU maps its RAM with memfds). */
export interface GuestMem {
  readSync(iova: bigint, len: number): Uint8Array;
  writeSync(iova: bigint, data: Uint8Array): void;
  view(iova: bigint, len: number, write: boolean): DmaView;
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
export function prpSegments(mem: GuestMem, prp1: bigint, prp2: bigint, len: number): Segment[] {
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
export function writePrp(mem: GuestMem, prp1: bigint, prp2: bigint, data: Uint8Array): void {
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
export function readPrp(mem: GuestMem, prp1: bigint, prp2: bigint, len: number): Uint8Array {
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
