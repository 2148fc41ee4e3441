// REGION_READ (9) / REGION_WRITE (10) (§2.9). Access header, 16 bytes:
//   0 u64 offset | 8 u32 region | 12 u32 count | 16 data[count]
// READ: request 16, reply 16 + count. WRITE: request 16 + count, reply 16
// (count = bytes written). `offset` is bigint.
import { e2big, einval } from './errors.js';
import { checkBytes, DEFAULT_MAX_DATA_XFER_SIZE, need, u32, u64, viewBytes, viewOf, Writer, type PayloadParts } from './wire.js';

/** Bytes of `u64 offset, u32 region, u32 count` before REGION_READ/WRITE data. */
export const REGION_ACCESS_HEADER_SIZE = 16;

/** A REGION_READ/REGION_WRITE range: region index, offset and byte count. */
export interface RegionAccess {
  offset: bigint;
  region: number;
  count: number;
}

/** A REGION_READ reply or REGION_WRITE request: the range and its bytes. */
export interface RegionAccessWithData extends RegionAccess {
  data: Uint8Array;
}

/** Limits a REGION_READ/WRITE decoder enforces. */
export interface RegionAccessOptions {
  /** Largest count accepted (our max_data_xfer_size); default 1 MiB. Larger → E2BIG. */
  maxCount?: number;
}

function header(w: Writer, a: RegionAccess): Writer {
  return w.u64(0, 'offset', a.offset).u32(8, 'region', a.region).u32(12, 'count', a.count);
}

function decodeHeader(payload: Uint8Array, what: string): RegionAccess {
  need(payload, REGION_ACCESS_HEADER_SIZE, what);
  const dv = viewOf(payload);
  return { offset: u64(dv, 0), region: u32(dv, 8), count: u32(dv, 12) };
}

function checkCount(a: RegionAccess, opts: RegionAccessOptions, what: string): void {
  const max = opts.maxCount ?? DEFAULT_MAX_DATA_XFER_SIZE;
  if (a.count > max) throw e2big(`${what} count ${a.count} > ${max}`);
}

function withData(a: RegionAccess, data: Uint8Array): Uint8Array {
  checkBytes('data', data);
  if (data.length !== a.count) throw einval(`data length ${data.length} ≠ count ${a.count}`);
  return header(new Writer(REGION_ACCESS_HEADER_SIZE + data.length), a).bytes(REGION_ACCESS_HEADER_SIZE, data).buf;
}

/** 16-byte READ request. */
export function encodeRegionReadRequest(a: RegionAccess): Uint8Array {
  return header(new Writer(REGION_ACCESS_HEADER_SIZE), a).buf;
}

/**
 * Payload < 16 → EINVAL; count > maxCount → E2BIG (libvfio-user says EINVAL;
 * the errno for an oversize transfer here follows QEMU's DMA handling).
 * Bytes after the header are ignored. Region index and range are the
 * caller's to check (see rangeWithin).
 */
export function decodeRegionReadRequest(payload: Uint8Array, opts: RegionAccessOptions = {}): RegionAccess {
  const a = decodeHeader(payload, 'REGION_READ');
  checkCount(a, opts, 'REGION_READ');
  return a;
}

/** 16 + count: the request header echoed (count = data.length) + data. */
export function encodeRegionReadReply(a: RegionAccessWithData): Uint8Array {
  return withData(a, a.data);
}

/**
 * Payload < 16 → EINVAL, data length ≠ count → EINVAL. An empty payload is
 * accepted as libvfio-user's reply to a count-0 read (all fields 0).
 */
export function decodeRegionReadReply(payload: Uint8Array): RegionAccessWithData {
  if (payload instanceof Uint8Array && payload.length === 0) return { offset: 0n, region: 0, count: 0, data: new Uint8Array(0) };
  const a = decodeHeader(payload, 'REGION_READ reply');
  if (payload.length - REGION_ACCESS_HEADER_SIZE !== a.count) throw einval(`REGION_READ reply: ${payload.length - 16} data bytes, count ${a.count}`);
  return { ...a, data: viewBytes(payload, REGION_ACCESS_HEADER_SIZE) };
}

/** 16 + count. */
export function encodeRegionWriteRequest(a: RegionAccessWithData): Uint8Array {
  return withData(a, a.data);
}

/** Payload < 16 → EINVAL; count > maxCount → E2BIG; payload − 16 ≠ count → EINVAL. */
export function decodeRegionWriteRequest(payload: Uint8Array, opts: RegionAccessOptions = {}): RegionAccessWithData {
  const a = decodeHeader(payload, 'REGION_WRITE');
  checkCount(a, opts, 'REGION_WRITE');
  if (payload.length - REGION_ACCESS_HEADER_SIZE !== a.count) throw einval(`REGION_WRITE: ${payload.length - 16} data bytes, count ${a.count}`);
  return { ...a, data: viewBytes(payload, REGION_ACCESS_HEADER_SIZE) };
}

/** 16 bytes: header echoed with count = bytes written. */
export function encodeRegionWriteReply(a: RegionAccess): Uint8Array {
  return header(new Writer(REGION_ACCESS_HEADER_SIZE), a).buf;
}

/** Payload < 16 → EINVAL; an empty payload is accepted as count 0 (see READ). */
export function decodeRegionWriteReply(payload: Uint8Array): RegionAccess {
  if (payload instanceof Uint8Array && payload.length === 0) return { offset: 0n, region: 0, count: 0 };
  const a = decodeHeader(payload, 'REGION_WRITE reply');
  if (payload.length !== REGION_ACCESS_HEADER_SIZE) throw einval(`REGION_WRITE reply: ${payload.length} bytes, expected 16`);
  return a;
}

/**
 * READ reply as [16-byte head, data] (see PayloadParts): the device's bytes
 * go out without being copied behind the head.
 */
export function encodeRegionReadReplyParts(a: RegionAccessWithData): PayloadParts {
  checkBytes('data', a.data);
  if (a.data.length !== a.count) throw einval(`data length ${a.data.length} ≠ count ${a.count}`);
  return [header(new Writer(REGION_ACCESS_HEADER_SIZE), a).buf, a.data];
}

/** WRITE request as [16-byte head, data]. */
export function encodeRegionWriteRequestParts(a: RegionAccessWithData): PayloadParts {
  return encodeRegionReadReplyParts(a);
}
