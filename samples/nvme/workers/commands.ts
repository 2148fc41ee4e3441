// The NVM command set as an I/O worker runs it: Read, Write, Flush, Write
// Zeroes and Dataset Management, with data moving between the backing file
// and zero-copy views of guest memory (PRP lists walked first). The same
// behaviour as the controller's own I/O path (io.ts, prp.ts), written
// against the worker's DMA so that path can change shape on its own.
import type { DmaView } from '../../../src/server/dma.js';
import type { WorkerDma } from '../../../src/server/dma-worker.js';
import { countIo } from '../file-io.js';
import { NvmeStatus, type Completion } from '../queues.js';
import { IO_OPC, LIMITS, SC } from '../registers.js';
import type { WorkerBacking } from './backing.js';
import type { WorkerSqe } from './rings.js';

const PAGE = 4096;
const LBA_SIZE = 512;
const MAX_BYTES = PAGE << LIMITS.mdts;
const ZEROES = new Uint8Array(MAX_BYTES);
const OK: Completion = { result: 0, status: 0 };
/** Transfers up to this size use synchronous file calls; larger ones go to the thread pool. */
export const WORKER_SYNC_IO_MAX = 16 * 1024;

/** What a command runs against. */
export interface IoTarget {
  dma: WorkerDma;
  backing: WorkerBacking;
}

interface Range {
  addr: number;
  len: number;
}

function checkNs(nsid: number, allowBroadcast = false): void {
  if (nsid === 1 || (allowBroadcast && nsid === 0xffffffff)) return;
  throw new NvmeStatus(SC.INVALID_NS, `namespace ${nsid}`);
}

function lbaRange(t: IoTarget, sqe: WorkerSqe): { slba: number; nlb: number } {
  const nlb = (sqe.cdw12 & 0xffff) + 1;
  const slba = sqe.cdw11 * 0x1_0000_0000 + sqe.cdw10;
  if (sqe.cdw11 >= 0x200000 || (slba + nlb) * LBA_SIZE > t.backing.size) {
    throw new NvmeStatus(SC.LBA_RANGE, `LBA ${slba}+${nlb} beyond ${t.backing.size / LBA_SIZE}`);
  }
  return { slba, nlb };
}

function readEntries(t: IoTarget, at: number, count: number): DataView {
  try {
    const raw = t.dma.readSync(at, count * 8);
    return new DataView(raw.buffer, raw.byteOffset, raw.length);
  } catch (e) {
    throw new NvmeStatus(SC.DATA_XFER_ERROR, `PRP list at 0x${at.toString(16)}: ${(e as Error).message}`);
  }
}

/** The guest ranges of a `len`-byte transfer described by PRP1/PRP2, merged where contiguous. */
function prpRanges(t: IoTarget, prp1: number, prp2: number, len: number): Range[] {
  const out: Range[] = [];
  const push = (addr: number, n: number): void => {
    const last = out[out.length - 1];
    if (last && last.addr + last.len === addr) last.len += n;
    else out.push({ addr, len: n });
  };
  if (prp1 < 0) throw new NvmeStatus(SC.DATA_XFER_ERROR, 'PRP1 beyond guest memory');
  if (prp1 % 4 !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'PRP1 not dword aligned');
  const first = Math.min(len, PAGE - (prp1 % PAGE));
  push(prp1, first);
  let left = len - first;
  if (left === 0) return out;
  if (prp2 < 0) throw new NvmeStatus(SC.DATA_XFER_ERROR, 'PRP2 beyond guest memory');
  if (left <= PAGE) {
    if (prp2 % PAGE !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'PRP2 entry not page aligned');
    push(prp2, left);
    return out;
  }
  // PRP2 points to a list; the last entry of a full list page chains to the next page.
  let list = prp2;
  if (list % 8 !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'PRP list pointer not qword aligned');
  while (left > 0) {
    const slots = (PAGE - (list % PAGE)) / 8;
    const needed = Math.ceil(left / PAGE);
    const chained = needed > slots;
    const n = chained ? slots : needed;
    const dv = readEntries(t, list, n);
    const entry = (i: number): number => {
      const hi = dv.getUint32(i * 8 + 4, true);
      return hi >= 0x200000 ? -1 : hi * 0x1_0000_0000 + dv.getUint32(i * 8, true);
    };
    for (let i = 0; i < (chained ? n - 1 : n); i++) {
      const e = entry(i);
      if (e < 0) throw new NvmeStatus(SC.DATA_XFER_ERROR, 'PRP entry beyond guest memory');
      if (e % PAGE !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, `PRP entry 0x${e.toString(16)} not page aligned`);
      const take = Math.min(left, PAGE);
      push(e, take);
      left -= take;
    }
    if (chained) {
      list = entry(n - 1);
      if (list < 0 || list % 8 !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'chained PRP list pointer not qword aligned');
    }
  }
  return out;
}

/** Zero-copy views of every range (page by page where a range crosses regions or windows); all released on failure. */
function viewsOf(t: IoTarget, ranges: Range[], write: boolean): DmaView[] {
  const views: DmaView[] = [];
  let at = 0;
  try {
    for (const r of ranges) {
      at = r.addr;
      try {
        views.push(t.dma.view(r.addr, r.len, { write }));
      } catch {
        for (let off = 0; off < r.len; ) {
          at = r.addr + off;
          const n = Math.min(r.len - off, PAGE - (at % PAGE));
          views.push(t.dma.view(at, n, { write }));
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

function transfer(t: IoTarget, sqe: WorkerSqe, write: boolean): Completion | Promise<Completion> {
  const { slba, nlb } = lbaRange(t, sqe);
  const len = nlb * LBA_SIZE;
  if (len > MAX_BYTES) throw new NvmeStatus(SC.INVALID_FIELD, `transfer of ${len} bytes exceeds MDTS`);
  if (write && t.backing.readOnly) throw new NvmeStatus(SC.WRITE_FAULT, 'namespace is read-only');
  // A read from the namespace writes guest memory, and the other way round.
  const views = viewsOf(t, prpRanges(t, sqe.prp1, sqe.prp2, len), !write);
  const bufs = views.map((v) => v.bytes);
  const release = (): void => {
    for (const v of views) v.release();
  };
  const fail = (e: unknown): never => {
    throw new NvmeStatus(write ? SC.WRITE_FAULT : SC.UNRECOVERED_READ, (e as Error).message);
  };
  const account = (): Completion => {
    countIo(t.backing.stats, write, nlb);
    return OK;
  };
  const pos = slba * LBA_SIZE;
  const fua = write && (sqe.cdw12 & (1 << 30)) !== 0;
  if (len <= WORKER_SYNC_IO_MAX && !fua) {
    try {
      if (write) t.backing.writeSync(pos, bufs);
      else t.backing.readSync(pos, bufs);
    } catch (e) {
      fail(e);
    } finally {
      release();
    }
    return account();
  }
  return (async () => {
    try {
      try {
        if (write) await t.backing.write(pos, bufs);
        else await t.backing.read(pos, bufs);
        if (fua) await t.backing.flush();
      } catch (e) {
        fail(e);
      }
    } finally {
      release();
    }
    return account();
  })();
}

async function writeZeroes(t: IoTarget, sqe: WorkerSqe): Promise<Completion> {
  const { slba, nlb } = lbaRange(t, sqe);
  if (t.backing.readOnly) throw new NvmeStatus(SC.WRITE_FAULT, 'namespace is read-only');
  try {
    for (let pos = slba * LBA_SIZE, left = nlb * LBA_SIZE; left > 0; ) {
      const n = Math.min(left, ZEROES.length);
      await t.backing.write(pos, [ZEROES.subarray(0, n)]);
      pos += n;
      left -= n;
    }
  } catch (e) {
    throw new NvmeStatus(SC.WRITE_FAULT, (e as Error).message);
  }
  return OK;
}

/** Dataset Management: ranges are validated; deallocation is advisory (DLFEAT = 0), so the data stays. */
function datasetManagement(t: IoTarget, sqe: WorkerSqe): Completion {
  const nr = (sqe.cdw10 & 0xff) + 1;
  const raw = new Uint8Array(nr * 16);
  let off = 0;
  for (const r of prpRanges(t, sqe.prp1, sqe.prp2, raw.length)) {
    try {
      raw.set(t.dma.readSync(r.addr, r.len), off);
    } catch (e) {
      throw new NvmeStatus(SC.DATA_XFER_ERROR, `DMA read 0x${r.addr.toString(16)}: ${(e as Error).message}`);
    }
    off += r.len;
  }
  const dv = new DataView(raw.buffer);
  for (let i = 0; i < nr; i++) {
    const nlb = dv.getUint32(i * 16 + 4, true);
    const slba = Number(dv.getBigUint64(i * 16 + 8, true));
    if (!Number.isSafeInteger(slba) || (slba + nlb) * LBA_SIZE > t.backing.size) throw new NvmeStatus(SC.LBA_RANGE, `DSM range ${slba}+${nlb}`);
  }
  return OK;
}

async function flush(t: IoTarget): Promise<Completion> {
  try {
    await t.backing.flush();
  } catch (e) {
    throw new NvmeStatus(SC.WRITE_FAULT, (e as Error).message);
  }
  return OK;
}

/** Runs one I/O command; throws NvmeStatus for a failure the host gets as status. */
export function executeWorkerIo(t: IoTarget, sqe: WorkerSqe): Completion | Promise<Completion> {
  if ((sqe.flags >>> 6) & 3) throw new NvmeStatus(SC.INVALID_FIELD, 'SGLs not supported');
  switch (sqe.opcode) {
    case IO_OPC.READ:
      checkNs(sqe.nsid);
      return transfer(t, sqe, false);
    case IO_OPC.WRITE:
      checkNs(sqe.nsid);
      return transfer(t, sqe, true);
    case IO_OPC.FLUSH:
      checkNs(sqe.nsid, true);
      return flush(t);
    case IO_OPC.WRITE_ZEROES:
      checkNs(sqe.nsid);
      return writeZeroes(t, sqe);
    case IO_OPC.DSM:
      checkNs(sqe.nsid);
      return datasetManagement(t, sqe);
    default:
      throw new NvmeStatus(SC.INVALID_OPCODE, `I/O opcode 0x${sqe.opcode.toString(16)}`);
  }
}
