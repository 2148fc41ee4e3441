// DMA_READ (11) / DMA_WRITE (12), server → client (§2.10 and the verified
// section: QEMU 11.1.3 uses this spec/libvfio-user layout).
//   0 u64 address | 8 u64 count | 16 data[count]
// DMA_READ: request 16, reply 16 + count (address and count echoed).
// DMA_WRITE: request 16 + count, reply 16-byte echo {u64 address, u64 count}.
// address and count are bigint.
import { e2big, einval } from './errors.js';
import { checkBytes, DEFAULT_MAX_DATA_XFER_SIZE, need, u32, u64, viewBytes, viewOf, Writer, type PayloadParts } from './wire.js';

/** Bytes of `u64 addr, u64 count` before DMA_READ/DMA_WRITE data. */
export const DMA_RW_HEADER_SIZE = 16;

/** A DMA_READ/DMA_WRITE range: IOVA and byte count. */
export interface DmaAccess {
  address: bigint;
  count: bigint;
}

/** A DMA_READ reply or DMA_WRITE request: the range and its bytes. */
export interface DmaAccessWithData extends DmaAccess {
  data: Uint8Array;
}

/** Limits a DMA_READ/DMA_WRITE decoder enforces. */
export interface DmaRwOptions {
  /** Largest count accepted (the receiver's max_data_xfer_size); default 1 MiB. Larger → E2BIG. */
  maxCount?: number;
}

function header(size: number, a: DmaAccess): Writer {
  return new Writer(size).u64(0, 'address', a.address).u64(8, 'count', a.count);
}

function decodeHeader(payload: Uint8Array, what: string, opts?: DmaRwOptions): DmaAccess {
  need(payload, DMA_RW_HEADER_SIZE, what);
  const dv = viewOf(payload);
  const a = { address: u64(dv, 0), count: u64(dv, 8) };
  if (opts) {
    const max = opts.maxCount ?? DEFAULT_MAX_DATA_XFER_SIZE;
    if (a.count > BigInt(max)) throw e2big(`${what} count ${a.count} > ${max}`);
  }
  return a;
}

function withData(a: DmaAccessWithData): Uint8Array {
  checkBytes('data', a.data);
  if (BigInt(a.data.length) !== a.count) throw einval(`data length ${a.data.length} ≠ count ${a.count}`);
  return header(DMA_RW_HEADER_SIZE + a.data.length, a).bytes(DMA_RW_HEADER_SIZE, a.data).buf;
}

function dataFollows(payload: Uint8Array, a: DmaAccess, what: string): DmaAccessWithData {
  const have = BigInt(payload.length - DMA_RW_HEADER_SIZE);
  if (have < a.count) throw einval(`${what}: ${have} data bytes, count ${a.count}`);
  if (have > a.count) throw e2big(`${what}: ${have} data bytes, count ${a.count}`);
  return { ...a, data: viewBytes(payload, DMA_RW_HEADER_SIZE) };
}

/** Encodes a 16-byte DMA_READ request. */
export function encodeDmaReadRequest(a: DmaAccess): Uint8Array {
  return header(DMA_RW_HEADER_SIZE, a).buf;
}

/** Payload ≠ 16: short → EINVAL, longer → E2BIG; count > maxCount → E2BIG. */
export function decodeDmaReadRequest(payload: Uint8Array, opts: DmaRwOptions = {}): DmaAccess {
  const a = decodeHeader(payload, 'DMA_READ', opts);
  if (payload.length !== DMA_RW_HEADER_SIZE) throw e2big(`DMA_READ request: ${payload.length} bytes, expected 16`);
  return a;
}

/** 16 + count. */
export function encodeDmaReadReply(a: DmaAccessWithData): Uint8Array {
  return withData(a);
}

/** Payload < 16 or fewer data bytes than count → EINVAL; more → E2BIG. */
export function decodeDmaReadReply(payload: Uint8Array): DmaAccessWithData {
  return dataFollows(payload, decodeHeader(payload, 'DMA_READ reply'), 'DMA_READ reply');
}

/** 16 + count. */
export function encodeDmaWriteRequest(a: DmaAccessWithData): Uint8Array {
  return withData(a);
}

/** Payload < 16 or short data → EINVAL; count > maxCount or extra data → E2BIG. */
export function decodeDmaWriteRequest(payload: Uint8Array, opts: DmaRwOptions = {}): DmaAccessWithData {
  return dataFollows(payload, decodeHeader(payload, 'DMA_WRITE', opts), 'DMA_WRITE');
}

/** 16-byte echo {address, count} (what QEMU 11.1.3 and libvfio-user use). */
export function encodeDmaWriteReply(a: DmaAccess): Uint8Array {
  return header(DMA_RW_HEADER_SIZE, a).buf;
}

/**
 * Accepts the 16-byte echo, the SPEC's 12-byte `{u64 address, u32 count}`,
 * and an empty payload (QEMU 10.1's header-only reply → null). Any other
 * length → EINVAL.
 */
export function decodeDmaWriteReply(payload: Uint8Array): DmaAccess | null {
  need(payload, 0, 'DMA_WRITE reply');
  if (payload.length === 0) return null;
  const dv = viewOf(payload);
  if (payload.length === 12) return { address: u64(dv, 0), count: BigInt(u32(dv, 8)) };
  if (payload.length === DMA_RW_HEADER_SIZE) return { address: u64(dv, 0), count: u64(dv, 8) };
  throw einval(`DMA_WRITE reply: ${payload.length} bytes`);
}

/** DMA_WRITE request / DMA_READ reply as [16-byte head, data] (see PayloadParts). */
export function encodeDmaDataParts(a: DmaAccessWithData): PayloadParts {
  checkBytes('data', a.data);
  if (BigInt(a.data.length) !== a.count) throw einval(`data length ${a.data.length} ≠ count ${a.count}`);
  return [header(DMA_RW_HEADER_SIZE, a).buf, a.data];
}
