// DEVICE_FEATURE (16) (§2.13, §4): `u32 argsz, u32 flags, data`.
// flags: bits 0-15 feature index, GET 0x10000, SET 0x20000, PROBE 0x40000.
// SET and PROBE replies echo the request; a GET reply is the 8-byte header
// (argsz = total reply length) followed by the feature data.
// Dirty-bitmap helpers for DMA_LOGGING_REPORT live in dirty-bitmap.ts.
import { e2big, einval } from './errors.js';
import { DEVICE_FEATURE_FLAGS_KNOWN, DeviceFeature, DeviceFeatureFlags, NUM_DEVICE_STATES } from './constants.js';
import { bitmapByteSize } from './dirty-bitmap.js';
import { isPowerOfTwo, rangeFits } from './ranges.js';
import { checkBytes, copyBytes, need, u32, u64, viewOf, Writer } from './wire.js';

/** Bytes of `u32 argsz, u32 flags` before a DEVICE_FEATURE's data. */
export const DEVICE_FEATURE_HEADER_SIZE = 8;

/** A DEVICE_FEATURE request or reply: argsz, flags (feature index and operation) and data. */
export interface DeviceFeatureMessage {
  /** Request: largest reply accepted. Reply: reply length. Defaults to 8 + data.length. */
  argsz?: number;
  flags: number;
  data: Uint8Array;
}

/** Decoded request/reply with the flag word split up. */
export interface DecodedDeviceFeature extends Required<DeviceFeatureMessage> {
  feature: number;
  get: boolean;
  set: boolean;
  probe: boolean;
}

/** The feature index (VFIO_DEVICE_FEATURE_*) in a flag word. */
export const featureIndex = (flags: number): number => flags & DeviceFeatureFlags.MASK;
/** True when the flag word asks for GET. */
export const isFeatureGet = (flags: number): boolean => (flags & DeviceFeatureFlags.GET) !== 0;
/** True when the flag word asks for SET. */
export const isFeatureSet = (flags: number): boolean => (flags & DeviceFeatureFlags.SET) !== 0;
/** True when the flag word is a PROBE. */
export const isFeatureProbe = (flags: number): boolean => (flags & DeviceFeatureFlags.PROBE) !== 0;
/** Flag word for `feature` with the given operation bits (GET/SET/PROBE). */
export const featureFlags = (feature: number, ops: number): number => ((feature & DeviceFeatureFlags.MASK) | ops) >>> 0;

/**
 * Syntactic flag checks (kernel rules): unknown bits, GET together with SET
 * without PROBE, or none of GET/SET/PROBE → EINVAL.
 */
export function checkFeatureFlags(flags: number): void {
  if ((flags & ~DEVICE_FEATURE_FLAGS_KNOWN) !== 0) throw einval(`DEVICE_FEATURE unknown flags 0x${flags.toString(16)}`);
  const get = isFeatureGet(flags);
  const set = isFeatureSet(flags);
  const probe = isFeatureProbe(flags);
  if (get && set && !probe) throw einval('DEVICE_FEATURE GET and SET are exclusive without PROBE');
  if (!get && !set && !probe) throw einval('DEVICE_FEATURE needs GET, SET or PROBE');
}

/**
 * libvfio-user's rule: the requested GET/SET bits must all be among
 * `supportedOps` (GET|SET of the feature), else EINVAL.
 */
export function checkFeatureOps(flags: number, supportedOps: number): void {
  const requested = flags & (DeviceFeatureFlags.GET | DeviceFeatureFlags.SET);
  if ((requested & supportedOps) !== requested) throw einval(`DEVICE_FEATURE ${featureIndex(flags)}: operation not supported`);
}

/** Ops each feature supports (libvfio-user's table). */
export const FEATURE_SUPPORTED_OPS: Readonly<Record<number, number>> = {
  [DeviceFeature.MIGRATION]: DeviceFeatureFlags.GET,
  [DeviceFeature.MIG_DEVICE_STATE]: DeviceFeatureFlags.GET | DeviceFeatureFlags.SET,
  [DeviceFeature.DMA_LOGGING_START]: DeviceFeatureFlags.SET,
  [DeviceFeature.DMA_LOGGING_STOP]: DeviceFeatureFlags.SET,
  [DeviceFeature.DMA_LOGGING_REPORT]: DeviceFeatureFlags.GET,
};

function encodeMsg(m: DeviceFeatureMessage): Uint8Array {
  const data = checkBytes('data', m.data);
  return new Writer(DEVICE_FEATURE_HEADER_SIZE + data.length)
    .u32(0, 'argsz', m.argsz ?? DEVICE_FEATURE_HEADER_SIZE + data.length)
    .u32(4, 'flags', m.flags)
    .bytes(DEVICE_FEATURE_HEADER_SIZE, data).buf;
}

function decodeMsg(payload: Uint8Array, what: string): DecodedDeviceFeature {
  need(payload, DEVICE_FEATURE_HEADER_SIZE, what);
  const dv = viewOf(payload);
  const flags = u32(dv, 4);
  return {
    argsz: u32(dv, 0),
    flags,
    data: copyBytes(payload, DEVICE_FEATURE_HEADER_SIZE),
    feature: featureIndex(flags),
    get: isFeatureGet(flags),
    set: isFeatureSet(flags),
    probe: isFeatureProbe(flags),
  };
}

/** Encodes a DEVICE_FEATURE request payload. */
export const encodeDeviceFeatureRequest = encodeMsg;
/** Encodes a DEVICE_FEATURE reply payload (same layout as the request). */
export const encodeDeviceFeatureReply = encodeMsg;

/**
 * Payload < 8 → EINVAL; bad flags (checkFeatureFlags) → EINVAL. argsz is
 * checked against the reply size by the handler (it knows the reply).
 */
export function decodeDeviceFeatureRequest(payload: Uint8Array): DecodedDeviceFeature {
  const m = decodeMsg(payload, 'DEVICE_FEATURE');
  checkFeatureFlags(m.flags);
  return m;
}

/** Payload < 8 → EINVAL. */
export function decodeDeviceFeatureReply(payload: Uint8Array): DecodedDeviceFeature {
  return decodeMsg(payload, 'DEVICE_FEATURE reply');
}

/** A GET reply: argsz = 8 + data.length, the request's flags, then data. */
export function encodeDeviceFeatureGetReply(flags: number, data: Uint8Array): Uint8Array {
  return encodeMsg({ flags, data });
}

/** Throws EINVAL when the client's argsz cannot hold a reply of `replySize` bytes. */
export function checkFeatureArgsz(argsz: number, replySize: number): void {
  if (argsz < replySize) throw einval(`DEVICE_FEATURE argsz ${argsz} < reply size ${replySize}`);
}

// ---- MIGRATION (1): GET reply data `u64 flags` ----------------------------------

/** Bytes of the MIGRATION feature's data (`u64 flags`). */
export const MIGRATION_DATA_SIZE = 8;

/** The MIGRATION feature's data: `u64` VFIO_MIGRATION_* flags. */
export function encodeMigrationData(migrationFlags: bigint): Uint8Array {
  return new Writer(MIGRATION_DATA_SIZE).u64(0, 'migrationFlags', migrationFlags).buf;
}
/** Data < 8 bytes → EINVAL. */
export function decodeMigrationData(data: Uint8Array): bigint {
  need(data, MIGRATION_DATA_SIZE, 'MIGRATION feature data');
  return u64(viewOf(data), 0);
}
/** Whole 16-byte GET MIGRATION reply payload: argsz 16, flags GET|1, u64 flags. */
export function encodeMigrationGetReply(migrationFlags: bigint): Uint8Array {
  return encodeDeviceFeatureGetReply(featureFlags(DeviceFeature.MIGRATION, DeviceFeatureFlags.GET), encodeMigrationData(migrationFlags));
}

// ---- MIG_DEVICE_STATE (2): `u32 device_state, u32 data_fd` ------------------------

/** Bytes of the MIG_DEVICE_STATE feature's data. */
export const MIG_DEVICE_STATE_DATA_SIZE = 8;

/** MIG_DEVICE_STATE data: the migration state and the (unused) data fd. */
export interface MigDeviceState {
  /** DeviceState (0..7). */
  deviceState: number;
  /** Unused in vfio-user; clients send 0 or 0xffffffff (-1). Encoding accepts -1. */
  dataFd: number;
}

/** Encodes MIG_DEVICE_STATE data (`u32 device_state, u32 data_fd`). */
export function encodeMigDeviceState(s: MigDeviceState): Uint8Array {
  return new Writer(MIG_DEVICE_STATE_DATA_SIZE).u32(0, 'deviceState', s.deviceState).u32(4, 'dataFd', s.dataFd === -1 ? 0xffffffff : s.dataFd).buf;
}

/** Data < 8 bytes → EINVAL; device_state ≥ 8 → EINVAL. dataFd comes back as a u32. */
export function decodeMigDeviceState(data: Uint8Array): MigDeviceState {
  need(data, MIG_DEVICE_STATE_DATA_SIZE, 'MIG_DEVICE_STATE data');
  const dv = viewOf(data);
  const deviceState = u32(dv, 0);
  if (deviceState >= NUM_DEVICE_STATES) throw einval(`device_state ${deviceState} >= 8`);
  return { deviceState, dataFd: u32(dv, 4) };
}

// ---- DMA_LOGGING_START (6) / STOP (7) ------------------------------------------------
// `u64 page_size, u32 num_ranges, u32 reserved, {u64 iova, u64 length}[]`

/** Bytes of DMA_LOGGING_START/STOP data before the ranges. */
export const DMA_LOGGING_CONTROL_HEADER_SIZE = 16;
/** Bytes per range of DMA_LOGGING_START data. */
export const DMA_LOGGING_RANGE_SIZE = 16;

/** An IOVA range dirty logging covers. */
export interface DmaLoggingRange {
  iova: bigint;
  length: bigint;
}

/** DMA_LOGGING_START/STOP data: page size and ranges. */
export interface DmaLoggingControl {
  pageSize: bigint;
  /** Empty = log everything. */
  ranges: DmaLoggingRange[];
}

/** Encodes DMA_LOGGING_START/STOP data. */
export function encodeDmaLoggingControl(c: DmaLoggingControl): Uint8Array {
  const w = new Writer(DMA_LOGGING_CONTROL_HEADER_SIZE + DMA_LOGGING_RANGE_SIZE * c.ranges.length)
    .u64(0, 'pageSize', c.pageSize)
    .u32(8, 'numRanges', c.ranges.length);
  c.ranges.forEach((r, i) => {
    const at = DMA_LOGGING_CONTROL_HEADER_SIZE + DMA_LOGGING_RANGE_SIZE * i;
    w.u64(at, 'iova', r.iova).u64(at + 8, 'length', r.length);
  });
  return w.buf;
}

/**
 * Data < 16 → EINVAL; num_ranges entries not all present → EINVAL. Extra
 * bytes are ignored. page_size 0 is for the handler to refuse (see
 * validateDmaLoggingStart).
 */
export function decodeDmaLoggingControl(data: Uint8Array): DmaLoggingControl {
  need(data, DMA_LOGGING_CONTROL_HEADER_SIZE, 'DMA_LOGGING control data');
  const dv = viewOf(data);
  const n = u32(dv, 8);
  if (n > (data.length - DMA_LOGGING_CONTROL_HEADER_SIZE) / DMA_LOGGING_RANGE_SIZE) throw einval(`DMA_LOGGING: ${n} ranges do not fit`);
  const ranges: DmaLoggingRange[] = [];
  for (let i = 0; i < n; i++) {
    const at = DMA_LOGGING_CONTROL_HEADER_SIZE + DMA_LOGGING_RANGE_SIZE * i;
    ranges.push({ iova: u64(dv, at), length: u64(dv, at + 8) });
  }
  return { pageSize: u64(dv, 0), ranges };
}

/** Encodes DMA_LOGGING_START data (see encodeDmaLoggingControl). */
export const encodeDmaLoggingStart = encodeDmaLoggingControl;
/** Decodes DMA_LOGGING_START data (see decodeDmaLoggingControl). */
export const decodeDmaLoggingStart = decodeDmaLoggingControl;

/** START rules: page_size non-zero power of two; each range fits in u64 (EINVAL). */
export function validateDmaLoggingStart(c: DmaLoggingControl): void {
  if (!isPowerOfTwo(c.pageSize)) throw einval(`DMA_LOGGING_START page_size ${c.pageSize} is not a power of two`);
  for (const r of c.ranges) if (!rangeFits(r.iova, r.length)) throw einval('DMA_LOGGING_START range overflows');
}

// ---- DMA_LOGGING_REPORT (8): `u64 iova, u64 length, u64 page_size` [+ bitmap] -------

/** Bytes of a DMA_LOGGING_REPORT request's data (before any bitmap). */
export const DMA_LOGGING_REPORT_SIZE = 24;

/** DMA_LOGGING_REPORT request data: the range and page size to report on. */
export interface DmaLoggingReportRequest {
  iova: bigint;
  length: bigint;
  pageSize: bigint;
}

/** DMA_LOGGING_REPORT reply data: the request plus its dirty bitmap (one bit per page). */
export interface DmaLoggingReport extends DmaLoggingReportRequest {
  bitmap: Uint8Array;
}

/** Encodes DMA_LOGGING_REPORT request data (24 bytes). */
export function encodeDmaLoggingReportRequest(r: DmaLoggingReportRequest): Uint8Array {
  return new Writer(DMA_LOGGING_REPORT_SIZE).u64(0, 'iova', r.iova).u64(8, 'length', r.length).u64(16, 'pageSize', r.pageSize).buf;
}

/** Data < 24 → EINVAL. */
export function decodeDmaLoggingReportRequest(data: Uint8Array): DmaLoggingReportRequest {
  need(data, DMA_LOGGING_REPORT_SIZE, 'DMA_LOGGING_REPORT data');
  const dv = viewOf(data);
  return { iova: u64(dv, 0), length: u64(dv, 8), pageSize: u64(dv, 16) };
}

/**
 * REPORT rules: page_size a power of two, length ≥ page_size (LVU), range
 * fits in u64 → else EINVAL; bitmap too large → E2BIG. Returns the bitmap
 * size in bytes.
 */
export function validateDmaLoggingReport(r: DmaLoggingReportRequest): number {
  if (!isPowerOfTwo(r.pageSize)) throw einval(`DMA_LOGGING_REPORT page_size ${r.pageSize} is not a power of two`);
  if (r.length < r.pageSize) throw einval('DMA_LOGGING_REPORT length < page_size');
  if (!rangeFits(r.iova, r.length)) throw einval('DMA_LOGGING_REPORT range overflows');
  return bitmapByteSize(r.length, r.pageSize);
}

/** 24 + bitmap; the bitmap must have exactly bitmapByteSize(length, pageSize) bytes. */
export function encodeDmaLoggingReport(r: DmaLoggingReport): Uint8Array {
  checkBytes('bitmap', r.bitmap);
  if (r.bitmap.length !== bitmapByteSize(r.length, r.pageSize)) throw einval('DMA_LOGGING_REPORT bitmap has the wrong size');
  return new Writer(DMA_LOGGING_REPORT_SIZE + r.bitmap.length)
    .u64(0, 'iova', r.iova)
    .u64(8, 'length', r.length)
    .u64(16, 'pageSize', r.pageSize)
    .bytes(DMA_LOGGING_REPORT_SIZE, r.bitmap).buf;
}

/**
 * Data < 24 → EINVAL; page_size 0 → EINVAL; bitmap length ≠
 * ceil(ceil(length/page_size)/64)*8 → EINVAL (E2BIG when that is absurd).
 */
export function decodeDmaLoggingReport(data: Uint8Array): DmaLoggingReport {
  const r = decodeDmaLoggingReportRequest(data);
  if (r.pageSize === 0n) throw einval('DMA_LOGGING_REPORT page_size 0');
  const size = bitmapByteSize(r.length, r.pageSize);
  if (data.length - DMA_LOGGING_REPORT_SIZE !== size) throw einval(`DMA_LOGGING_REPORT bitmap: ${data.length - 24} bytes, expected ${size}`);
  return { ...r, bitmap: copyBytes(data, DMA_LOGGING_REPORT_SIZE) };
}

/** Whole GET REPORT reply payload: 8 + 24 + bitmap, argsz = its length. */
export function encodeDmaLoggingReportReply(r: DmaLoggingReport): Uint8Array {
  return encodeDeviceFeatureGetReply(featureFlags(DeviceFeature.DMA_LOGGING_REPORT, DeviceFeatureFlags.GET), encodeDmaLoggingReport(r));
}

/** Reply size a REPORT needs: 8 + 24 + bitmap bytes (E2BIG/EINVAL as validateDmaLoggingReport). */
export function dmaLoggingReportReplySize(r: DmaLoggingReportRequest): number {
  if (r.pageSize === 0n) throw einval('page_size 0');
  const n = bitmapByteSize(r.length, r.pageSize);
  if (n > 0xffffffff - 32) throw e2big('REPORT reply too large');
  return DEVICE_FEATURE_HEADER_SIZE + DMA_LOGGING_REPORT_SIZE + n;
}
