// NVM command set I/O commands: Read, Write, Flush, Write Zeroes and Dataset
// Management. Data moves between the backing file and zero-copy views of the
// guest's RAM (PRP lists resolved first), asynchronously.
import type { NvmeController } from './controller.js';
import { LBA_SHIFT, LBA_SIZE } from './namespace.js';
import { PAGE_SIZE, prpSegments, readPrp, viewsOf } from './prp.js';
import { NvmeStatus, type Completion, type Sqe } from './queues.js';
import { IO_OPC, LIMITS, SC } from './registers.js';

const OK: Completion = { result: 0, status: 0 };
const MAX_BYTES = PAGE_SIZE << LIMITS.mdts;
const ZEROES = new Uint8Array(MAX_BYTES);
/** Transfers up to this size use synchronous file calls (page-cache copies of a few microseconds); larger ones go to the thread pool. */
export const SYNC_IO_MAX = 16 * 1024;

function checkNs(nsid: number, allowBroadcast = false): void {
  if (nsid === 1) return;
  if (allowBroadcast && nsid === 0xffffffff) return;
  throw new NvmeStatus(SC.INVALID_NS, `namespace ${nsid}`);
}

function lbaRange(c: NvmeController, sqe: Sqe): { slba: number; nlb: number } {
  const slba = Number(BigInt(sqe.cdw10) | (BigInt(sqe.cdw11) << 32n));
  const nlb = (sqe.cdw12 & 0xffff) + 1;
  if (!Number.isSafeInteger(slba) || slba + nlb > c.ns.blocks) throw new NvmeStatus(SC.LBA_RANGE, `LBA ${slba}+${nlb} beyond ${c.ns.blocks}`);
  return { slba, nlb };
}

function transfer(c: NvmeController, sqe: Sqe, write: boolean): Completion | Promise<Completion> {
  const { slba, nlb } = lbaRange(c, sqe);
  const len = nlb << LBA_SHIFT;
  if (len > MAX_BYTES) throw new NvmeStatus(SC.INVALID_FIELD, `transfer of ${len} bytes exceeds MDTS`);
  if (write && c.ns.readOnly) throw new NvmeStatus(SC.WRITE_FAULT, 'namespace is read-only');
  const segs = prpSegments(c.mem, sqe.prp1, sqe.prp2, len);
  // A read from the namespace writes guest memory, and the other way round.
  const views = viewsOf(c.mem, segs, !write);
  const release = (): void => {
    for (const v of views) v.release();
  };
  const bufs = views.map((v) => v.bytes);
  const fail = (e: unknown): never => {
    if (e instanceof NvmeStatus) throw e;
    throw new NvmeStatus(write ? SC.WRITE_FAULT : SC.UNRECOVERED_READ, (e as Error).message);
  };
  const account = (): Completion => {
    const st = c.ns.stats;
    if (write) {
      st.writeCommands++;
      st.blocksWritten += nlb;
    } else {
      st.readCommands++;
      st.blocksRead += nlb;
    }
    return OK;
  };
  const fua = write && (sqe.cdw12 & (1 << 30)) !== 0;
  if (len <= SYNC_IO_MAX && !fua) {
    try {
      if (write) c.ns.writeSync(slba * LBA_SIZE, bufs);
      else c.ns.readSync(slba * LBA_SIZE, bufs);
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
        if (write) await c.ns.write(slba * LBA_SIZE, bufs);
        else await c.ns.read(slba * LBA_SIZE, bufs);
      } catch (e) {
        fail(e);
      }
      if (fua) await c.ns.flush();
    } finally {
      release();
    }
    return account();
  })();
}

async function writeZeroes(c: NvmeController, sqe: Sqe): Promise<Completion> {
  const { slba, nlb } = lbaRange(c, sqe);
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
    case IO_OPC.WRITE_ZEROES:
      checkNs(sqe.nsid);
      return writeZeroes(c, sqe);
    case IO_OPC.DSM:
      checkNs(sqe.nsid);
      return datasetManagement(c, sqe);
    default:
      throw new NvmeStatus(SC.INVALID_OPCODE, `I/O opcode 0x${sqe.opcode.toString(16)}`);
  }
}
