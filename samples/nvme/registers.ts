// NVMe controller register map (NVMe 1.4, §3.1) and the constants the rest of
// the sample shares: opcodes, status codes, feature and log identifiers.

/** BAR0 layout: registers, doorbells from 0x1000, MSI-X table and PBA after them. */
export const BAR0_SIZE = 0x4000;
export const DOORBELL_BASE = 0x1000;
/** Doorbell stride 4 bytes (CAP.DSTRD = 0). */
export const DOORBELL_STRIDE = 4;
export const MSIX_TABLE_OFFSET = 0x2000;
export const MSIX_PBA_OFFSET = 0x3000;

export const REG = {
  CAP: 0x00, // 8 bytes
  VS: 0x08,
  INTMS: 0x0c,
  INTMC: 0x10,
  CC: 0x14,
  CSTS: 0x1c,
  NSSR: 0x20,
  AQA: 0x24,
  ASQ: 0x28, // 8 bytes
  ACQ: 0x30, // 8 bytes
  CMBLOC: 0x38,
  CMBSZ: 0x3c,
} as const;

/** NVMe 1.4.0. */
export const NVME_VERSION = 0x00010400;

export const CC = {
  EN: 1 << 0,
  cssShift: 4,
  mpsShift: 7,
  amsShift: 11,
  shnShift: 14,
  iosqesShift: 16,
  iocqesShift: 20,
} as const;

export const CSTS = {
  RDY: 1 << 0,
  CFS: 1 << 1,
  shstShift: 2,
  NSSRO: 1 << 4,
  PP: 1 << 5,
} as const;

export const SHST_NORMAL = 0;
export const SHST_OCCURRING = 1;
export const SHST_COMPLETE = 2;

export const ADMIN_OPC = {
  DELETE_SQ: 0x00,
  CREATE_SQ: 0x01,
  GET_LOG_PAGE: 0x02,
  DELETE_CQ: 0x04,
  CREATE_CQ: 0x05,
  IDENTIFY: 0x06,
  ABORT: 0x08,
  SET_FEATURES: 0x09,
  GET_FEATURES: 0x0a,
  ASYNC_EVENT: 0x0c,
  KEEP_ALIVE: 0x18,
  DOORBELL_BUFFER_CONFIG: 0x7c,
} as const;

export const IO_OPC = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
  WRITE_ZEROES: 0x08,
  DSM: 0x09,
} as const;

/** Status field values (SCT << 8 | SC) and the DNR bit (in the 15-bit status field). */
export const SC = {
  SUCCESS: 0x000,
  INVALID_OPCODE: 0x001,
  INVALID_FIELD: 0x002,
  CID_CONFLICT: 0x003,
  DATA_XFER_ERROR: 0x004,
  ABORTED_POWER_LOSS: 0x005,
  INTERNAL: 0x006,
  ABORT_REQ: 0x007,
  ABORT_SQ_DELETED: 0x008,
  INVALID_NS: 0x00b,
  PRP_OFFSET_INVALID: 0x013,
  LBA_RANGE: 0x080,
  CAP_EXCEEDED: 0x081,
  // Command specific (SCT 1)
  CQ_INVALID: 0x100,
  QID_INVALID: 0x101,
  QUEUE_SIZE: 0x102,
  ABORT_LIMIT: 0x103,
  AER_LIMIT: 0x105,
  INVALID_LOG_PAGE: 0x109,
  INVALID_VECTOR: 0x108,
  INVALID_QUEUE_DELETION: 0x10c,
  FEATURE_NOT_SAVEABLE: 0x10d,
  // Media errors (SCT 2)
  WRITE_FAULT: 0x280,
  UNRECOVERED_READ: 0x281,
} as const;
export const STATUS_DNR = 0x4000;

export const FEAT = {
  ARBITRATION: 0x01,
  POWER_MGMT: 0x02,
  TEMP_THRESHOLD: 0x04,
  ERROR_RECOVERY: 0x05,
  VOLATILE_WC: 0x06,
  NUM_QUEUES: 0x07,
  IRQ_COALESCE: 0x08,
  IRQ_CONFIG: 0x09,
  WRITE_ATOMIC: 0x0a,
  ASYNC_EVENT: 0x0b,
  TIMESTAMP: 0x0e,
} as const;

export const LOG = {
  ERROR: 0x01,
  SMART: 0x02,
  FW_SLOT: 0x03,
  CMD_EFFECTS: 0x05,
} as const;

/** Limits this controller advertises. */
export const LIMITS = {
  /** CAP.MQES + 1: entries per queue. */
  maxQueueEntries: 1024,
  /** I/O submission / completion queue pairs. */
  maxIoQueues: 16,
  /** MDTS as a power of two of the 4 KiB minimum page: 2^8 * 4 KiB = 1 MiB. */
  mdts: 8,
  /** CAP.TO in 500 ms units. */
  timeout: 20,
  /** Outstanding AERs (AERL + 1). */
  aerLimit: 4,
  /** MSI-X table entries: admin + one per I/O CQ. */
  msixVectors: 17,
} as const;

/** CAP: MQES, CQR (contiguous queues required), TO, DSTRD 0, CSS = NVM, MPSMIN/MAX = 4 KiB. */
export function capValue(): bigint {
  const mqes = BigInt(LIMITS.maxQueueEntries - 1);
  const cqr = 1n << 16n;
  const to = BigInt(LIMITS.timeout) << 24n;
  const css = 1n << 37n; // NVM command set
  const mpsmin = 0n << 48n;
  const mpsmax = 0n << 52n;
  return mqes | cqr | to | css | mpsmin | mpsmax;
}

export const u32 = (b: Uint8Array, off: number): number => (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
export const u64 = (b: Uint8Array, off: number): bigint => BigInt(u32(b, off)) | (BigInt(u32(b, off + 4)) << 32n);
