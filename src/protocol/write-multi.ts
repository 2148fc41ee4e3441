// REGION_WRITE_MULTI (15) (§2.12). Sent by QEMU (always NO_REPLY) only when
// the server advertised write_multiple.
//   0 u64 wr_cnt, then per entry i at 8 + 24·i:
//   u64 offset, u32 region, u32 count (≤ 8), u8 data[8] (count bytes used)
// Reply (only without NO_REPLY): u64 wr_cnt = writes completed.
import { e2big, einval } from './errors.js';
import { checkBytes, copyBytes, need, u32, u64, viewOf, Writer } from './wire.js';

/** Bytes of a REGION_WRITE_MULTI request before its entries. */
export const WRITE_MULTI_HEADER_SIZE = 8;
/** Bytes per REGION_WRITE_MULTI entry. */
export const WRITE_MULTI_ENTRY_SIZE = 24;
/** Most data bytes one REGION_WRITE_MULTI entry carries. */
export const WRITE_MULTI_MAX_DATA = 8;
/** QEMU packs at most this many entries. */
export const WRITE_MULTI_QEMU_MAX_ENTRIES = 200;
/** Entries a decoder accepts by default (1 MiB of entries). */
export const WRITE_MULTI_DEFAULT_MAX_ENTRIES = Math.floor((1 << 20) / WRITE_MULTI_ENTRY_SIZE);

/** One posted write of a REGION_WRITE_MULTI request. */
export interface WriteMultiEntry {
  offset: bigint;
  region: number;
  /** 0..8 bytes; `data.length` must equal it. */
  count: number;
  data: Uint8Array;
}

/** REGION_WRITE_MULTI request: posted writes to apply in order. */
export interface WriteMultiRequest {
  entries: WriteMultiEntry[];
}

/** Encodes a REGION_WRITE_MULTI request. */
export function encodeWriteMultiRequest(r: WriteMultiRequest): Uint8Array {
  const w = new Writer(WRITE_MULTI_HEADER_SIZE + WRITE_MULTI_ENTRY_SIZE * r.entries.length);
  w.u64(0, 'wr_cnt', BigInt(r.entries.length));
  r.entries.forEach((e, i) => {
    const at = WRITE_MULTI_HEADER_SIZE + WRITE_MULTI_ENTRY_SIZE * i;
    checkBytes('data', e.data);
    if (e.count > WRITE_MULTI_MAX_DATA || e.data.length !== e.count) throw einval(`WRITE_MULTI entry ${i}: count ${e.count}, data ${e.data.length}`);
    w.u64(at, 'offset', e.offset).u32(at + 8, 'region', e.region).u32(at + 12, 'count', e.count).bytes(at + 16, e.data);
  });
  return w.buf;
}

/**
 * Payload < 8 → EINVAL; wr_cnt > maxEntries → E2BIG; payload ≠ 8 + 24·wr_cnt
 * → EINVAL; an entry count > 8 → EINVAL.
 */
export function decodeWriteMultiRequest(payload: Uint8Array, maxEntries = WRITE_MULTI_DEFAULT_MAX_ENTRIES): WriteMultiRequest {
  need(payload, WRITE_MULTI_HEADER_SIZE, 'REGION_WRITE_MULTI');
  const dv = viewOf(payload);
  const n = u64(dv, 0);
  if (n > BigInt(maxEntries)) throw e2big(`REGION_WRITE_MULTI wr_cnt ${n} > ${maxEntries}`);
  const cnt = Number(n);
  if (payload.length !== WRITE_MULTI_HEADER_SIZE + WRITE_MULTI_ENTRY_SIZE * cnt) {
    throw einval(`REGION_WRITE_MULTI: ${payload.length} bytes for ${cnt} entries`);
  }
  const entries: WriteMultiEntry[] = [];
  for (let i = 0; i < cnt; i++) {
    const at = WRITE_MULTI_HEADER_SIZE + WRITE_MULTI_ENTRY_SIZE * i;
    const count = u32(dv, at + 12);
    if (count > WRITE_MULTI_MAX_DATA) throw einval(`REGION_WRITE_MULTI entry ${i} count ${count} > 8`);
    entries.push({ offset: u64(dv, at), region: u32(dv, at + 8), count, data: copyBytes(payload, at + 16, at + 16 + count) });
  }
  return { entries };
}

/** REGION_WRITE_MULTI reply: how many writes were applied. */
export interface WriteMultiReply {
  /** Writes completed. */
  wrCnt: bigint;
}

/** Encodes an 8-byte REGION_WRITE_MULTI reply. */
export function encodeWriteMultiReply(r: WriteMultiReply): Uint8Array {
  return new Writer(8).u64(0, 'wrCnt', r.wrCnt).buf;
}

/** Payload ≠ 8 bytes → EINVAL. */
export function decodeWriteMultiReply(payload: Uint8Array): WriteMultiReply {
  need(payload, 8, 'REGION_WRITE_MULTI reply');
  if (payload.length !== 8) throw einval(`REGION_WRITE_MULTI reply: ${payload.length} bytes, expected 8`);
  return { wrCnt: u64(viewOf(payload), 0) };
}
