// Admin command set: what Linux's nvme driver sends while probing and
// running a controller.
import type { NvmeController } from './controller.js';
import { LBA_SHIFT } from './namespace.js';
import { readPrp, writePrp } from './prp.js';
import { CompletionQueue, NvmeStatus, SubmissionQueue, type Completion, type Sqe } from './queues.js';
import { ADMIN_OPC, FEAT, LIMITS, LOG, NVME_VERSION, SC } from './registers.js';

const OK: Completion = { result: 0, status: 0 };
const NSID = 1;

function ascii(b: Uint8Array, off: number, len: number, s: string): void {
  for (let i = 0; i < len; i++) b[off + i] = i < s.length ? s.charCodeAt(i) & 0x7f : 0x20;
}

/** Stable 16-byte namespace GUID derived from the serial number. */
export function namespaceGuid(serial: string): Uint8Array {
  const g = new Uint8Array(16);
  for (let i = 0; i < serial.length; i++) g[i % 16] = (g[i % 16]! * 31 + serial.charCodeAt(i)) & 0xff;
  g[0] = 0x56; // never all-zero
  return g;
}

export function identifyController(c: NvmeController): Uint8Array {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, c.identity.vendorId, true);
  dv.setUint16(2, c.identity.subsystemVendorId, true);
  ascii(b, 4, 20, c.identity.serial);
  ascii(b, 24, 40, c.identity.model);
  ascii(b, 64, 8, c.identity.firmware);
  b[72] = 6; // RAB
  b[77] = LIMITS.mdts;
  dv.setUint16(78, 1, true); // CNTLID
  dv.setUint32(80, NVME_VERSION, true);
  b[111] = 1; // CNTRLTYPE: I/O controller
  // OACS: Doorbell Buffer Config, unless I/O workers serve the queues (they take MMIO doorbells only).
  dv.setUint16(256, c.ioWorkers ? 0 : 1 << 8, true);
  b[258] = 3; // ACL: 4 concurrent Aborts
  b[259] = LIMITS.aerLimit - 1; // AERL
  b[260] = 0x03; // FRMW: slot 1 read-only, 1 slot
  b[261] = 0x00; // LPA
  b[262] = 0; // ELPE: 1 error log entry
  b[263] = 0; // NPSS: one power state
  dv.setUint16(266, 0x157, true); // WCTEMP 343 K
  dv.setUint16(268, 0x173, true); // CCTEMP 371 K
  b[512] = 0x66; // SQES
  b[513] = 0x44; // CQES
  dv.setUint16(514, LIMITS.maxQueueEntries, true); // MAXCMD
  dv.setUint32(516, 1, true); // NN
  dv.setUint16(520, (1 << 2) | (1 << 3), true); // ONCS: DSM, Write Zeroes
  b[524] = 0; // FNA
  b[525] = 1; // VWC present
  dv.setUint32(536, 0, true); // SGLS: none
  ascii(b, 768, 256, `nqn.2026-01.io.github.vfio-user-ts:nvme:${c.identity.serial}`);
  for (let i = 768 + `nqn.2026-01.io.github.vfio-user-ts:nvme:${c.identity.serial}`.length; i < 1024; i++) b[i] = 0;
  // Power state 0: 5 W.
  dv.setUint16(2048, 500, true);
  return b;
}

export function identifyNamespace(c: NvmeController): Uint8Array {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  const blocks = BigInt(c.ns.blocks);
  dv.setBigUint64(0, blocks, true); // NSZE
  dv.setBigUint64(8, blocks, true); // NCAP
  dv.setBigUint64(16, blocks, true); // NUSE
  b[24] = 0; // NSFEAT
  b[25] = 0; // NLBAF: one format
  b[26] = 0; // FLBAS: format 0
  b[33] = 0; // DLFEAT: deallocated blocks read unspecified
  b.set(namespaceGuid(c.identity.serial), 104); // NGUID
  dv.setUint32(128, LBA_SHIFT << 16, true); // LBAF0: 512-byte LBAs, no metadata
  return b;
}

function identify(c: NvmeController, sqe: Sqe): Completion {
  const cns = sqe.cdw10 & 0xff;
  let data: Uint8Array;
  switch (cns) {
    case 0x00:
      if (sqe.nsid !== NSID) throw new NvmeStatus(SC.INVALID_NS, `identify namespace ${sqe.nsid}`);
      data = identifyNamespace(c);
      break;
    case 0x01:
      data = identifyController(c);
      break;
    case 0x02: {
      data = new Uint8Array(4096);
      if (sqe.nsid < NSID) new DataView(data.buffer).setUint32(0, NSID, true);
      break;
    }
    case 0x03: {
      if (sqe.nsid !== NSID) throw new NvmeStatus(SC.INVALID_NS, `descriptors of namespace ${sqe.nsid}`);
      data = new Uint8Array(4096);
      data[0] = 2; // NIDT: NGUID
      data[1] = 16;
      data.set(namespaceGuid(c.identity.serial), 4);
      break;
    }
    case 0x06: {
      // I/O command set specific controller data for the NVM set: all limits 0 = none beyond MDTS.
      if (sqe.cdw11 >>> 24 !== 0) throw new NvmeStatus(SC.INVALID_FIELD, `command set ${sqe.cdw11 >>> 24}`);
      data = new Uint8Array(4096);
      break;
    }
    default:
      throw new NvmeStatus(SC.INVALID_FIELD, `identify CNS 0x${cns.toString(16)} not supported`);
  }
  writePrp(c.mem, sqe.prp1, sqe.prp2, data);
  return OK;
}

function u128(dv: DataView, off: number, v: bigint): void {
  dv.setBigUint64(off, v & 0xffffffffffffffffn, true);
  dv.setBigUint64(off + 8, v >> 64n, true);
}

function getLogPage(c: NvmeController, sqe: Sqe): Completion {
  const lid = sqe.cdw10 & 0xff;
  const numd = ((sqe.cdw10 >>> 16) | ((sqe.cdw11 & 0xffff) << 16)) + 1;
  const len = numd * 4;
  const offset = Number(BigInt(sqe.cdw12) | (BigInt(sqe.cdw13) << 32n));
  let log: Uint8Array;
  switch (lid) {
    case LOG.ERROR:
      log = new Uint8Array(64);
      break;
    case LOG.SMART: {
      log = new Uint8Array(512);
      const dv = new DataView(log.buffer);
      const st = c.ns.stats;
      dv.setUint16(1, 313, true); // 40 C
      log[3] = 100; // available spare
      log[4] = 10; // threshold
      // Data units are thousands of 512-byte units, rounded up.
      u128(dv, 32, BigInt(Math.ceil(st.blocksRead / 1000)));
      u128(dv, 48, BigInt(Math.ceil(st.blocksWritten / 1000)));
      u128(dv, 64, BigInt(st.readCommands));
      u128(dv, 80, BigInt(st.writeCommands));
      u128(dv, 112, 1n); // power cycles
      u128(dv, 176, BigInt(c.stats.errors));
      break;
    }
    case LOG.FW_SLOT: {
      log = new Uint8Array(512);
      log[0] = 1; // active slot 1
      ascii(log, 8, 8, c.identity.firmware);
      break;
    }
    default:
      throw new NvmeStatus(SC.INVALID_LOG_PAGE, `log page 0x${lid.toString(16)}`);
  }
  if (offset > log.length) throw new NvmeStatus(SC.INVALID_FIELD, `log offset ${offset}`);
  const out = new Uint8Array(len);
  out.set(log.subarray(offset, offset + len));
  writePrp(c.mem, sqe.prp1, sqe.prp2, out);
  return OK;
}

function setFeatures(c: NvmeController, sqe: Sqe): Completion {
  const fid = sqe.cdw10 & 0xff;
  if (sqe.cdw10 & 0x80000000) throw new NvmeStatus(SC.FEATURE_NOT_SAVEABLE, 'save not supported');
  const v = sqe.cdw11 >>> 0;
  const f = c.features;
  switch (fid) {
    case FEAT.ARBITRATION:
      f.arbitration = v;
      return OK;
    case FEAT.POWER_MGMT:
      if ((v & 0x1f) !== 0) throw new NvmeStatus(SC.INVALID_FIELD, `power state ${v & 0x1f}`);
      f.powerState = v;
      return OK;
    case FEAT.TEMP_THRESHOLD:
      f.tempThreshold = v & 0xffff;
      return OK;
    case FEAT.ERROR_RECOVERY:
      f.errorRecovery = v;
      return OK;
    case FEAT.VOLATILE_WC:
      f.volatileWriteCache = v & 1;
      return OK;
    case FEAT.NUM_QUEUES: {
      const nsq = (v & 0xffff) + 1;
      const ncq = (v >>> 16) + 1;
      if (nsq > 0xffff || ncq > 0xffff) throw new NvmeStatus(SC.INVALID_FIELD, 'number of queues');
      if (!c.granted) c.granted = { sq: Math.min(nsq, LIMITS.maxIoQueues), cq: Math.min(ncq, LIMITS.maxIoQueues) };
      return { result: (c.granted.sq - 1) | ((c.granted.cq - 1) << 16), status: 0 };
    }
    case FEAT.IRQ_COALESCE:
      f.irqCoalescing = v & 0xffff;
      return OK;
    case FEAT.IRQ_CONFIG: {
      const iv = v & 0xffff;
      if (iv >= LIMITS.msixVectors) throw new NvmeStatus(SC.INVALID_FIELD, `vector ${iv}`);
      f.irqConfig[iv] = v & 0x1ffff;
      return OK;
    }
    case FEAT.WRITE_ATOMIC:
      f.writeAtomicity = v & 1;
      return OK;
    case FEAT.ASYNC_EVENT:
      f.asyncEventConfig = v;
      return OK;
    case FEAT.TIMESTAMP:
      readPrp(c.mem, sqe.prp1, sqe.prp2, 8); // accepted, not kept
      throw new NvmeStatus(SC.INVALID_FIELD, 'timestamp not supported');
    default:
      throw new NvmeStatus(SC.INVALID_FIELD, `feature 0x${fid.toString(16)} not supported`);
  }
}

function getFeatures(c: NvmeController, sqe: Sqe): Completion {
  const fid = sqe.cdw10 & 0xff;
  const sel = (sqe.cdw10 >>> 8) & 7;
  if (sel === 3) {
    c.getFeature(fid, sqe.cdw11); // validates the FID
    return { result: 0x4, status: 0 }; // changeable, not saveable
  }
  if (sel > 3) throw new NvmeStatus(SC.INVALID_FIELD, `select ${sel}`);
  return { result: c.getFeature(fid, sqe.cdw11), status: 0 };
}

function createCq(c: NvmeController, sqe: Sqe): Completion {
  const qid = sqe.cdw10 & 0xffff;
  const size = (sqe.cdw10 >>> 16) + 1;
  const pc = sqe.cdw11 & 1;
  const ien = (sqe.cdw11 & 2) !== 0;
  const iv = sqe.cdw11 >>> 16;
  const max = c.granted?.cq ?? LIMITS.maxIoQueues;
  if (qid === 0 || qid > max || c.cqs[qid]) throw new NvmeStatus(SC.QID_INVALID, `CQ ${qid}`);
  if (size < 2 || size > LIMITS.maxQueueEntries) throw new NvmeStatus(SC.QUEUE_SIZE, `CQ size ${size}`);
  if (!pc) throw new NvmeStatus(SC.INVALID_FIELD, 'CQ must be physically contiguous');
  if (iv >= LIMITS.msixVectors) throw new NvmeStatus(SC.INVALID_VECTOR, `vector ${iv}`);
  if (sqe.prp1 <= 0 || sqe.prp1 % 4096 !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'CQ base not page aligned');
  const cq = new CompletionQueue(qid, sqe.prp1, size, iv, ien);
  c.cqs[qid] = cq;
  c.attachShadow(cq, qid, true);
  c.log.debug(`I/O CQ ${qid}: ${size} entries, vector ${iv}${ien ? '' : ' (polled)'}`);
  return OK;
}

function createSq(c: NvmeController, sqe: Sqe): Completion {
  const qid = sqe.cdw10 & 0xffff;
  const size = (sqe.cdw10 >>> 16) + 1;
  const pc = sqe.cdw11 & 1;
  const prio = (sqe.cdw11 >>> 1) & 3;
  const cqid = sqe.cdw11 >>> 16;
  const max = c.granted?.sq ?? LIMITS.maxIoQueues;
  if (qid === 0 || qid > max || c.sqs[qid]) throw new NvmeStatus(SC.QID_INVALID, `SQ ${qid}`);
  if (size < 2 || size > LIMITS.maxQueueEntries) throw new NvmeStatus(SC.QUEUE_SIZE, `SQ size ${size}`);
  if (!pc) throw new NvmeStatus(SC.INVALID_FIELD, 'SQ must be physically contiguous');
  if (cqid === 0 || !c.cqs[cqid]) throw new NvmeStatus(SC.CQ_INVALID, `CQ ${cqid}`);
  if (sqe.prp1 <= 0 || sqe.prp1 % 4096 !== 0) throw new NvmeStatus(SC.PRP_OFFSET_INVALID, 'SQ base not page aligned');
  const sq = new SubmissionQueue(qid, sqe.prp1, size, cqid, prio);
  c.sqs[qid] = sq;
  c.attachShadow(sq, qid, false);
  c.log.debug(`I/O SQ ${qid}: ${size} entries -> CQ ${cqid}`);
  return OK;
}

function deleteSq(c: NvmeController, sqe: Sqe): Completion | Promise<Completion> {
  const qid = sqe.cdw10 & 0xffff;
  const sq = c.sqs[qid];
  if (qid === 0 || !sq || sq.deleted) throw new NvmeStatus(SC.QID_INVALID, `SQ ${qid}`);
  sq.deleted = true; // no more fetches
  const remove = (): Completion => {
    if (c.sqs[qid] === sq) c.sqs[qid] = undefined;
    return OK;
  };
  if (sq.inflight === 0) return remove();
  // Commands already running complete (and post) before the deletion does.
  return new Promise((resolve) => {
    sq.onIdle = () => resolve(remove());
  });
}

function deleteCq(c: NvmeController, sqe: Sqe): Completion {
  const qid = sqe.cdw10 & 0xffff;
  if (qid === 0 || !c.cqs[qid]) throw new NvmeStatus(SC.QID_INVALID, `CQ ${qid}`);
  if (c.sqs.some((sq) => sq && sq.cqid === qid)) throw new NvmeStatus(SC.INVALID_QUEUE_DELETION, `CQ ${qid} still has SQs`);
  c.cqs[qid] = undefined;
  return OK;
}

/**
 * Doorbell Buffer Config (7Ch): PRP1 is the shadow doorbell page, PRP2 the
 * EventIdx page, both page aligned and in guest memory the device can write.
 * From now until the next controller reset, I/O queues take their doorbells
 * from the shadow page and the controller publishes EventIdx values that tell
 * the host when an MMIO doorbell is still needed.
 */
function doorbellBufferConfig(c: NvmeController, sqe: Sqe): Completion {
  const dbs = sqe.prp1;
  const eis = sqe.prp2;
  if (dbs <= 0 || eis <= 0 || dbs % 4096 !== 0 || eis % 4096 !== 0) {
    throw new NvmeStatus(SC.INVALID_FIELD, 'doorbell buffers must be page aligned');
  }
  // Both pages hold one dword per doorbell: (max I/O queues + admin) x 2 x 4 bytes.
  const bytes = (LIMITS.maxIoQueues + 1) * 8;
  if (!c.win.locate(dbs, bytes, true) || !c.win.locate(eis, bytes, true)) {
    throw new NvmeStatus(SC.INVALID_FIELD, 'doorbell buffers are not in writable guest memory');
  }
  c.configureDoorbellBuffers(dbs, eis);
  return OK;
}

/** Runs one admin command; null means it completes later (AER). */
export function executeAdmin(c: NvmeController, sqe: Sqe): Completion | Promise<Completion> | null {
  if ((sqe.flags >>> 6) & 3) throw new NvmeStatus(SC.INVALID_FIELD, 'SGLs not supported');
  switch (sqe.opcode) {
    case ADMIN_OPC.IDENTIFY:
      return identify(c, sqe);
    case ADMIN_OPC.GET_LOG_PAGE:
      return getLogPage(c, sqe);
    case ADMIN_OPC.SET_FEATURES:
      return setFeatures(c, sqe);
    case ADMIN_OPC.GET_FEATURES:
      return getFeatures(c, sqe);
    case ADMIN_OPC.CREATE_CQ:
      return createCq(c, sqe);
    case ADMIN_OPC.CREATE_SQ:
      return createSq(c, sqe);
    case ADMIN_OPC.DELETE_SQ:
      return deleteSq(c, sqe);
    case ADMIN_OPC.DELETE_CQ:
      return deleteCq(c, sqe);
    case ADMIN_OPC.ASYNC_EVENT: {
      if (c.aers.length >= LIMITS.aerLimit) throw new NvmeStatus(SC.AER_LIMIT, 'too many AERs');
      const ev = c.events.shift();
      if (ev !== undefined) return { result: ev, status: 0 };
      c.aers.push(sqe.cid);
      return null;
    }
    case ADMIN_OPC.ABORT:
      return { result: 1, status: 0 }; // DW0 bit 0: command not aborted
    case ADMIN_OPC.KEEP_ALIVE:
      return OK;
    case ADMIN_OPC.DOORBELL_BUFFER_CONFIG:
      return doorbellBufferConfig(c, sqe);
    default:
      throw new NvmeStatus(SC.INVALID_OPCODE, `admin opcode 0x${sqe.opcode.toString(16)}`);
  }
}
