// NVM command set I/O commands: Read, Write, Flush, Write Zeroes and Dataset
// Management. Reads and writes move data between the backing file and the
// guest's mapped RAM directly: synchronously along the PRPs without
// allocating (up to NvmeController.syncIoMax), or through the thread pool
// from zero-copy views of the PRP ranges.
import type { DmaView } from '../../src/server/dma.js';
import type { NvmeController } from './controller.js';
import { countIo } from './file-io.js';
import { LBA_SHIFT, LBA_SIZE } from './namespace.js';
import { PAGE_SIZE, prpSegments, readPrp, viewsOf } from './prp.js';
import { NvmeStatus, type Completion, type Sqe } from './queues.js';
import { IO_OPC, LIMITS, SC } from './registers.js';

const OK: Completion = Object.freeze({ result: 0, status: 0 });
const MAX_BYTES = PAGE_SIZE << LIMITS.mdts;
const ZEROES = new Uint8Array(MAX_BYTES);
/**
 * Default for NvmeController.syncIoMax: transfers up to this size use
 * synchronous file calls straight into guest memory (a page-cache copy costs
 * less than a round trip through the thread pool and its wake-ups); larger
 * ones and FUA writes go to the thread pool.
 */
export const SYNC_IO_MAX = MAX_BYTES;
const TWO_32 = 4294967296;

function checkNs(nsid: number, allowBroadcast = false): void {
  if (nsid === 1) return;
  if (allowBroadcast && nsid === 0xffffffff) return;
  throw new NvmeStatus(SC.INVALID_NS, `namespace ${nsid}`);
}

/** Starting LBA of a command (CDW10-11), checked with its block count against the namespace. */
function startLba(c: NvmeController, sqe: Sqe, nlb: number): number {
  const slba = sqe.cdw11 === 0 ? sqe.cdw10 : sqe.cdw11 * TWO_32 + sqe.cdw10;
  if (sqe.cdw11 >= 0x200000 || slba + nlb > c.ns.blocks) throw new NvmeStatus(SC.LBA_RANGE, `LBA ${slba}+${nlb} beyond ${c.ns.blocks}`);
  return slba;
}

/**
 * How much of the guest range [a, a+n) the windows reach in one piece (and
 * `win` then points at it): the whole range, else the rest of its page (a
 * range crossing from one DMA region into the next goes page by page). -k
 * when that page is in no whole-region window (a region over 4 GiB is mapped
 * in pieces): the caller takes the library's checked view for its k bytes.
 */
function locateRun(win: NvmeController['win'], a: number, n: number, write: boolean): number {
  if (win.locate(a, n, !write)) return n;
  const k = Math.min(n, PAGE_SIZE - (a % PAGE_SIZE));
  return win.locate(a, k, !write) ? k : -k;
}

/**
 * Moves `len` bytes between the backing file at `pos` and the guest ranges of
 * a PRP pair with one pread/pwrite per contiguous range, straight from/to the
 * mapped guest memory: nothing is allocated.
 */
function transferSync(c: NvmeController, prp1: number, prp2: number, pos: number, len: number, write: boolean): void {
  const cur = c.prp;
  const win = c.win;
  cur.start(prp1, prp2, len);
  if (!cur.next()) return;
  if (cur.len !== len) {
    transferVectored(c, pos, write);
    return;
  }
  // One contiguous range (every 4 KiB command, most small ones): one pread/pwrite, nothing allocated.
  do {
    let a = cur.addr;
    let n = cur.len;
    while (n > 0) {
      const run = locateRun(win, a, n, write);
      const k = Math.abs(run);
      if (run < 0) pieceViaView(c, a, k, pos, write);
      else {
        try {
          if (write) c.ns.writeAt(pos, win.bytes, win.offset, k);
          else {
            c.ns.readAt(pos, win.bytes, win.offset, k);
            win.dirty(win.offset, k);
          }
        } catch (e) {
          throw new NvmeStatus(write ? SC.WRITE_FAULT : SC.UNRECOVERED_READ, (e as Error).message);
        }
      }
      a += k;
      n -= k;
      pos += k;
    }
  } while (cur.next());
}

/**
 * Several guest ranges (a PRP list over scattered pages): one preadv/pwritev
 * over views of them rather than a call per page. The cursor stands on the
 * first range. Allocates the vector (commands over 4 KiB only).
 */
function transferVectored(c: NvmeController, pos: number, write: boolean): void {
  const cur = c.prp;
  const win = c.win;
  const iov: Uint8Array[] = [];
  const held: DmaView[] = [];
  try {
    do {
      let a = cur.addr;
      let n = cur.len;
      while (n > 0) {
        const run = locateRun(win, a, n, write);
        const k = Math.abs(run);
        if (run < 0) {
          const v = checkedView(c, a, k, write);
          held.push(v);
          iov.push(v.bytes);
        } else {
          iov.push(win.bytes.subarray(win.offset, win.offset + k));
          if (!write) win.dirty(win.offset, k);
        }
        a += k;
        n -= k;
      }
    } while (cur.next());
    try {
      if (write) c.ns.writeSync(pos, iov);
      else c.ns.readSync(pos, iov);
    } catch (e) {
      throw new NvmeStatus(write ? SC.WRITE_FAULT : SC.UNRECOVERED_READ, (e as Error).message);
    }
  } finally {
    for (const v of held) v.release();
  }
}

/** A library view of a data range (a read from the namespace writes guest memory); Data Transfer Error when DMA cannot reach it. */
function checkedView(c: NvmeController, addr: number, len: number, write: boolean): DmaView {
  try {
    return c.mem.view(addr, len, !write);
  } catch (e) {
    throw new NvmeStatus(SC.DATA_XFER_ERROR, `DMA at 0x${addr.toString(16)}: ${(e as Error).message}`);
  }
}

/** One page-sized piece through a library view (slow path: allocates, checks Bus Master and mapping). */
function pieceViaView(c: NvmeController, addr: number, len: number, pos: number, write: boolean): void {
  const v = checkedView(c, addr, len, write);
  try {
    if (write) c.ns.writeAt(pos, v.bytes, 0, len);
    else c.ns.readAt(pos, v.bytes, 0, len);
  } catch (e) {
    throw new NvmeStatus(write ? SC.WRITE_FAULT : SC.UNRECOVERED_READ, (e as Error).message);
  } finally {
    v.release();
  }
}

function transfer(c: NvmeController, sqe: Sqe, write: boolean): Completion | Promise<Completion> {
  const nlb = (sqe.cdw12 & 0xffff) + 1;
  const slba = startLba(c, sqe, nlb);
  const len = nlb << LBA_SHIFT;
  if (len > MAX_BYTES) throw new NvmeStatus(SC.INVALID_FIELD, `transfer of ${len} bytes exceeds MDTS`);
  if (write && c.ns.readOnly) throw new NvmeStatus(SC.WRITE_FAULT, 'namespace is read-only');
  const fua = write && (sqe.cdw12 & (1 << 30)) !== 0;
  if (len <= c.syncIoMax && !fua) {
    transferSync(c, sqe.prp1, sqe.prp2, slba * LBA_SIZE, len, write);
    countIo(c.ns.stats, write, nlb);
    return OK;
  }
  // Thread pool: the ranges and views are taken now (the entry is reused once this returns).
  const segs = prpSegments(c.mem, sqe.prp1, sqe.prp2, len);
  // A read from the namespace writes guest memory, and the other way round.
  const views = viewsOf(c.mem, segs, !write);
  return transferAsync(c, views, slba * LBA_SIZE, nlb, write, fua);
}

async function transferAsync(c: NvmeController, views: DmaView[], pos: number, nlb: number, write: boolean, fua: boolean): Promise<Completion> {
  const bufs = views.map((v) => v.bytes);
  try {
    try {
      if (write) await c.ns.write(pos, bufs);
      else await c.ns.read(pos, bufs);
    } catch (e) {
      throw new NvmeStatus(write ? SC.WRITE_FAULT : SC.UNRECOVERED_READ, (e as Error).message);
    }
    if (fua) await c.ns.flush();
  } finally {
    for (const v of views) v.release();
  }
  countIo(c.ns.stats, write, nlb);
  return OK;
}

async function writeZeroes(c: NvmeController, sqe: Sqe): Promise<Completion> {
  const nlb = (sqe.cdw12 & 0xffff) + 1;
  const slba = startLba(c, sqe, nlb);
  if (c.ns.readOnly) throw new NvmeStatus(SC.WRITE_FAULT, 'namespace is read-only');
  let pos = slba * LBA_SIZE;
  let left = nlb * LBA_SIZE;
  try {
    while (left > 0) {
      const n = Math.min(left, ZEROES.length);
      await c.ns.write(pos, [ZEROES.subarray(0, n)]);
      pos += n;
      left -= n;
    }
  } catch (e) {
    throw new NvmeStatus(SC.WRITE_FAULT, (e as Error).message);
  }
  return OK;
}

/** Dataset Management: ranges are validated; deallocation is advisory (DLFEAT = 0), so the data stays. */
function datasetManagement(c: NvmeController, sqe: Sqe): Completion {
  const nr = (sqe.cdw10 & 0xff) + 1;
  const raw = readPrp(c.mem, sqe.prp1, sqe.prp2, nr * 16);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.length);
  for (let i = 0; i < nr; i++) {
    const nlb = dv.getUint32(i * 16 + 4, true);
    const slba = Number(dv.getBigUint64(i * 16 + 8, true));
    if (!Number.isSafeInteger(slba) || slba + nlb > c.ns.blocks) throw new NvmeStatus(SC.LBA_RANGE, `DSM range ${slba}+${nlb}`);
  }
  return OK;
}

async function flush(c: NvmeController): Promise<Completion> {
  try {
    await c.ns.flush();
  } catch (e) {
    throw new NvmeStatus(SC.WRITE_FAULT, (e as Error).message);
  }
  return OK;
}

export function executeIo(c: NvmeController, sqe: Sqe): Completion | Promise<Completion> {
  if ((sqe.flags >>> 6) & 3) throw new NvmeStatus(SC.INVALID_FIELD, 'SGLs not supported');
  switch (sqe.opcode) {
    case IO_OPC.READ:
      checkNs(sqe.nsid);
      return transfer(c, sqe, false);
    case IO_OPC.WRITE:
      checkNs(sqe.nsid);
      return transfer(c, sqe, true);
    case IO_OPC.FLUSH:
      checkNs(sqe.nsid, true);
      return flush(c);
    case IO_OPC.WRITE_ZEROES: {
      checkNs(sqe.nsid);
      return writeZeroes(c, sqe);
    }
    case IO_OPC.DSM:
      checkNs(sqe.nsid);
      return datasetManagement(c, sqe);
    default:
      throw new NvmeStatus(SC.INVALID_OPCODE, `I/O opcode 0x${sqe.opcode.toString(16)}`);
  }
}
