// Internal helpers shared by the payload codecs: bounds-checked little-endian
// reads, and range-checked writes for encoder inputs. Everything throws
// ProtocolError only.
import { einval } from './errors.js';
import { isU16, isU32, isU64, isU8 } from './ranges.js';

/** DataView over exactly the bytes of `buf`. */
export function viewOf(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Throws EINVAL unless `payload` holds at least `n` bytes. */
export function need(payload: Uint8Array, n: number, what: string): void {
  if (!(payload instanceof Uint8Array)) throw einval(`${what}: payload is not a Uint8Array`);
  if (payload.length < n) throw einval(`${what}: payload needs ${n} bytes, got ${payload.length}`);
}

export const u16 = (dv: DataView, off: number): number => dv.getUint16(off, true);
export const u32 = (dv: DataView, off: number): number => dv.getUint32(off, true);
export const u64 = (dv: DataView, off: number): bigint => dv.getBigUint64(off, true);

export function checkU8(name: string, v: unknown): number {
  if (!isU8(v)) throw einval(`${name} must be a u8, got ${String(v)}`);
  return v;
}
export function checkU16(name: string, v: unknown): number {
  if (!isU16(v)) throw einval(`${name} must be a u16, got ${String(v)}`);
  return v;
}
export function checkU32(name: string, v: unknown): number {
  if (!isU32(v)) throw einval(`${name} must be a u32, got ${String(v)}`);
  return v;
}
export function checkU64(name: string, v: unknown): bigint {
  if (!isU64(v)) throw einval(`${name} must be a u64 bigint, got ${String(v)}`);
  return v;
}
export function checkBytes(name: string, v: unknown): Uint8Array {
  if (!(v instanceof Uint8Array)) throw einval(`${name} must be a Uint8Array`);
  return v;
}

/** Little-endian writer over a freshly allocated buffer of a fixed size. */
export class Writer {
  readonly buf: Uint8Array;
  readonly dv: DataView;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
    this.dv = viewOf(this.buf);
  }
  u16(off: number, name: string, v: unknown): this {
    this.dv.setUint16(off, checkU16(name, v), true);
    return this;
  }
  u32(off: number, name: string, v: unknown): this {
    this.dv.setUint32(off, checkU32(name, v), true);
    return this;
  }
  u64(off: number, name: string, v: unknown): this {
    this.dv.setBigUint64(off, checkU64(name, v), true);
    return this;
  }
  bytes(off: number, v: Uint8Array): this {
    this.buf.set(v, off);
    return this;
  }
}

/** A copy of `payload[start, end)` that does not alias the caller's buffer. */
export function copyBytes(payload: Uint8Array, start: number, end?: number): Uint8Array {
  return payload.slice(start, end);
}

/**
 * `payload[start, end)` without copying. Bulk data (region, DMA and
 * migration transfers, up to megabytes each) is decoded this way: the
 * transport gives every message its own payload buffer, so a view is safe
 * and saves a copy per message on the data path. Mutating it mutates the
 * payload.
 */
export function viewBytes(payload: Uint8Array, start: number, end?: number): Uint8Array {
  return payload.subarray(start, end);
}

/** Largest count a single transfer may carry by default (max_data_xfer_size). */
export const DEFAULT_MAX_DATA_XFER_SIZE = 1048576;

/**
 * A payload in parts, sent back to back: a small encoded head and the bulk
 * data it describes, so megabytes of data are not copied behind the head.
 * The parts must not change until the message is sent.
 */
export type PayloadParts = readonly Uint8Array[];
