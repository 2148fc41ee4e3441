// MIG_DATA_READ (17) / MIG_DATA_WRITE (18) (§2.14, §2.15).
//   0 u32 argsz | 4 u32 size | 8 data
// READ request: 8 bytes (argsz ≥ 8 + size). READ reply: argsz = 8 + returned,
// size = returned, data — and, for libvfio-user client compatibility, zero
// padding up to the requested size (the LVU sample client reads exactly
// 8 + requested bytes). WRITE request: argsz, size, data; reply: no payload.
import { e2big, einval } from './errors.js';
import { checkBytes, DEFAULT_MAX_DATA_XFER_SIZE, need, u32, viewBytes, viewOf, Writer, type PayloadParts } from './wire.js';

/** Bytes of `u32 argsz, u32 size` before MIG_DATA_READ/WRITE data. */
export const MIG_DATA_HEADER_SIZE = 8;

/** MIG_DATA_READ request: how many bytes of device state the client wants. */
export interface MigDataReadRequest {
  /** Defaults to 8 + size. */
  argsz?: number;
  size: number;
}

/** Limits a MIG_DATA decoder enforces. */
export interface MigDataOptions {
  /** Largest size accepted (our max_data_xfer_size); default 1 MiB. Larger → E2BIG. */
  maxSize?: number;
}

/** A MIG_DATA_READ reply or MIG_DATA_WRITE request: `size` bytes of device state. */
export interface MigData {
  argsz: number;
  size: number;
  data: Uint8Array;
}

/** Encodes an 8-byte MIG_DATA_READ request. */
export function encodeMigDataReadRequest(r: MigDataReadRequest): Uint8Array {
  return new Writer(MIG_DATA_HEADER_SIZE).u32(0, 'argsz', r.argsz ?? MIG_DATA_HEADER_SIZE + r.size).u32(4, 'size', r.size).buf;
}

/** Payload < 8 → EINVAL; size > maxSize → E2BIG; argsz < 8 + size → EINVAL. */
export function decodeMigDataReadRequest(payload: Uint8Array, opts: MigDataOptions = {}): Required<MigDataReadRequest> {
  need(payload, MIG_DATA_HEADER_SIZE, 'MIG_DATA_READ');
  const dv = viewOf(payload);
  const argsz = u32(dv, 0);
  const size = u32(dv, 4);
  const max = opts.maxSize ?? DEFAULT_MAX_DATA_XFER_SIZE;
  if (size > max) throw e2big(`MIG_DATA_READ size ${size} > ${max}`);
  if (argsz < MIG_DATA_HEADER_SIZE + size) throw einval(`MIG_DATA_READ argsz ${argsz} < 8 + ${size}`);
  return { argsz, size };
}

/**
 * Reply: argsz = 8 + data.length, size = data.length, data, then zeros up to
 * `padTo` data bytes when given (pass the requested size). data longer than
 * padTo → EINVAL.
 */
export function encodeMigDataReadReply(data: Uint8Array, padTo?: number): Uint8Array {
  checkBytes('data', data);
  const len = padTo === undefined ? data.length : padTo;
  if (!Number.isInteger(len) || len < data.length) throw einval(`MIG_DATA_READ reply: ${data.length} bytes do not fit padTo ${len}`);
  return new Writer(MIG_DATA_HEADER_SIZE + len)
    .u32(0, 'argsz', MIG_DATA_HEADER_SIZE + data.length)
    .u32(4, 'size', data.length)
    .bytes(MIG_DATA_HEADER_SIZE, data).buf;
}

/**
 * Payload < 8 or size > bytes present → EINVAL. Trailing (padding) bytes
 * after `size` are ignored. size 0 means end of data.
 */
export function decodeMigDataReadReply(payload: Uint8Array): MigData {
  need(payload, MIG_DATA_HEADER_SIZE, 'MIG_DATA_READ reply');
  const dv = viewOf(payload);
  const argsz = u32(dv, 0);
  const size = u32(dv, 4);
  if (size > payload.length - MIG_DATA_HEADER_SIZE) throw einval(`MIG_DATA_READ reply: size ${size} but ${payload.length - 8} bytes`);
  return { argsz, size, data: viewBytes(payload, MIG_DATA_HEADER_SIZE, MIG_DATA_HEADER_SIZE + size) };
}

/** argsz defaults to 8 + data.length; size = data.length. */
export function encodeMigDataWriteRequest(data: Uint8Array, argsz?: number): Uint8Array {
  checkBytes('data', data);
  return new Writer(MIG_DATA_HEADER_SIZE + data.length)
    .u32(0, 'argsz', argsz ?? MIG_DATA_HEADER_SIZE + data.length)
    .u32(4, 'size', data.length)
    .bytes(MIG_DATA_HEADER_SIZE, data).buf;
}

/**
 * Payload < 8 → EINVAL; size > maxSize → E2BIG; argsz < 8 + size or fewer
 * than size data bytes → EINVAL. Extra trailing bytes are ignored.
 */
export function decodeMigDataWriteRequest(payload: Uint8Array, opts: MigDataOptions = {}): MigData {
  need(payload, MIG_DATA_HEADER_SIZE, 'MIG_DATA_WRITE');
  const dv = viewOf(payload);
  const argsz = u32(dv, 0);
  const size = u32(dv, 4);
  const max = opts.maxSize ?? DEFAULT_MAX_DATA_XFER_SIZE;
  if (size > max) throw e2big(`MIG_DATA_WRITE size ${size} > ${max}`);
  if (argsz < MIG_DATA_HEADER_SIZE + size) throw einval(`MIG_DATA_WRITE argsz ${argsz} < 8 + ${size}`);
  if (payload.length - MIG_DATA_HEADER_SIZE < size) throw einval(`MIG_DATA_WRITE: ${payload.length - 8} data bytes, size ${size}`);
  return { argsz, size, data: viewBytes(payload, MIG_DATA_HEADER_SIZE, MIG_DATA_HEADER_SIZE + size) };
}

/** The WRITE reply has no payload. */
export function encodeMigDataWriteReply(): Uint8Array {
  return new Uint8Array(0);
}

/** Accepts an empty payload, or 8 bytes (tolerated by the LVU sample client). */
export function decodeMigDataWriteReply(payload: Uint8Array): void {
  need(payload, 0, 'MIG_DATA_WRITE reply');
  if (payload.length !== 0 && payload.length !== MIG_DATA_HEADER_SIZE) throw einval(`MIG_DATA_WRITE reply: ${payload.length} bytes`);
}

/**
 * READ reply as parts: [8-byte head, data] plus zeros up to `padTo` when the
 * data is short (see encodeMigDataReadReply for the padding).
 */
export function encodeMigDataReadReplyParts(data: Uint8Array, padTo?: number): PayloadParts {
  checkBytes('data', data);
  const len = padTo === undefined ? data.length : padTo;
  if (!Number.isInteger(len) || len < data.length) throw einval(`MIG_DATA_READ reply: ${data.length} bytes do not fit padTo ${len}`);
  const head = new Writer(MIG_DATA_HEADER_SIZE).u32(0, 'argsz', MIG_DATA_HEADER_SIZE + data.length).u32(4, 'size', data.length).buf;
  return len > data.length ? [head, data, new Uint8Array(len - data.length)] : [head, data];
}

/** WRITE request as [8-byte head, data]. */
export function encodeMigDataWriteRequestParts(data: Uint8Array, argsz?: number): PayloadParts {
  checkBytes('data', data);
  return [new Writer(MIG_DATA_HEADER_SIZE).u32(0, 'argsz', argsz ?? MIG_DATA_HEADER_SIZE + data.length).u32(4, 'size', data.length).buf, data];
}
