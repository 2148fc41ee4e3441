// DEVICE_GET_REGION_INFO (5): `struct vfio_region_info` (32 bytes) followed
// by a capability chain (§2.5). u64 fields are bigint.
//
//   0 u32 argsz | 4 u32 flags | 8 u32 index | 12 u32 cap_offset
//   16 u64 size | 24 u64 offset
//
// Cap header: u16 id, u16 version, u32 next (offset from the start of the
// struct, 0 = end). SPARSE_MMAP body: u32 nr_areas, u32 reserved,
// {u64 offset, u64 size}[nr_areas]. TYPE body: u32 type, u32 subtype.
import { einval } from './errors.js';
import { NUM_REGIONS, RegionCapId, RegionInfoFlags } from './constants.js';
import { checkBytes, copyBytes, need, u16, u32, u64, viewOf, Writer } from './wire.js';

/** Bytes of a GET_REGION_INFO request and of a reply before its capability chain. */
export const REGION_INFO_SIZE = 32;
/** Bytes of a region capability's header (`u16 id, u16 version, u32 next`). */
export const CAP_HEADER_SIZE = 8;
/** Caps a decoder follows at most before declaring a loop. */
const MAX_CAPS = 256;

/** GET_REGION_INFO request: the region asked about and the reply space the client allows. */
export interface RegionInfoRequest {
  /** Largest reply the client accepts; ≥ 32. Defaults to 32. */
  argsz?: number;
  index: number;
}

/** An mmap-able window of a region (offset and size, relative to the region). */
export interface SparseMmapArea {
  /** Relative to the region's `offset`. */
  offset: bigint;
  size: bigint;
}

/** The SPARSE_MMAP region capability: which parts of a region may be mmapped. */
export interface SparseMmapCap {
  id: typeof RegionCapId.SPARSE_MMAP;
  version: number;
  areas: SparseMmapArea[];
}

/** The TYPE region capability: type and subtype of a device-specific region. */
export interface TypeCap {
  id: typeof RegionCapId.TYPE;
  version: number;
  type: number;
  subtype: number;
}

/** Any other cap id; `data` is the body after the 8-byte header. */
export interface UnknownCap {
  id: number;
  version: number;
  data: Uint8Array;
}

/** A region capability in a GET_REGION_INFO reply. */
export type RegionCap = SparseMmapCap | TypeCap | UnknownCap;

/** True for a decoded SPARSE_MMAP capability. */
export const isSparseMmapCap = (c: RegionCap): c is SparseMmapCap => c.id === RegionCapId.SPARSE_MMAP && 'areas' in c;
/** True for a decoded TYPE capability. */
export const isTypeCap = (c: RegionCap): c is TypeCap => c.id === RegionCapId.TYPE && 'subtype' in c;

/** GET_REGION_INFO reply: flags, size, the offset to mmap at, and capabilities. */
export interface RegionInfo {
  /** Reply: size needed for the full reply (may exceed the payload). */
  argsz: number;
  flags: number;
  index: number;
  /** 0 = no caps in this payload; otherwise 32 when written by encodeRegionInfoReply. */
  capOffset: number;
  size: bigint;
  /** Base offset to mmap() the region fd at. */
  offset: bigint;
  /** Caps actually present in the payload (empty when truncated). */
  caps: RegionCap[];
}

/** Encodes a 32-byte GET_REGION_INFO request. */
export function encodeRegionInfoRequest(r: RegionInfoRequest): Uint8Array {
  return new Writer(REGION_INFO_SIZE).u32(0, 'argsz', r.argsz ?? REGION_INFO_SIZE).u32(8, 'index', r.index).buf;
}

/** Short payload, argsz < 32 or index ≥ numRegions (default 9) → EINVAL. */
export function decodeRegionInfoRequest(payload: Uint8Array, numRegions: number = NUM_REGIONS): Required<RegionInfoRequest> {
  need(payload, REGION_INFO_SIZE, 'DEVICE_GET_REGION_INFO');
  const dv = viewOf(payload);
  const argsz = u32(dv, 0);
  const index = u32(dv, 8);
  if (argsz < REGION_INFO_SIZE) throw einval(`DEVICE_GET_REGION_INFO argsz ${argsz} < 32`);
  if (index >= numRegions) throw einval(`DEVICE_GET_REGION_INFO index ${index} >= ${numRegions}`);
  return { argsz, index };
}

/** Bytes one cap occupies, header included. */
export function capSize(c: RegionCap): number {
  if (isSparseMmapCap(c)) return CAP_HEADER_SIZE + 8 + 16 * c.areas.length;
  if (isTypeCap(c)) return CAP_HEADER_SIZE + 8;
  return CAP_HEADER_SIZE + checkBytes('cap.data', (c as UnknownCap).data).length;
}

/** Bytes of the whole chain. */
export function capsSize(caps: readonly RegionCap[]): number {
  return caps.reduce((s, c) => s + capSize(c), 0);
}

/**
 * Encodes a cap chain as it sits at `base` bytes into the region-info struct
 * (normally 32): each `next` is an offset from the start of the struct.
 */
export function encodeCapChain(caps: readonly RegionCap[], base: number = REGION_INFO_SIZE): Uint8Array {
  const w = new Writer(capsSize(caps));
  let at = 0;
  caps.forEach((c, i) => {
    const sz = capSize(c);
    const next = i === caps.length - 1 ? 0 : base + at + sz;
    w.u16(at, 'cap.id', c.id).u16(at + 2, 'cap.version', c.version).u32(at + 4, 'cap.next', next);
    if (isSparseMmapCap(c)) {
      w.u32(at + 8, 'nr_areas', c.areas.length);
      c.areas.forEach((a, j) => {
        w.u64(at + 16 + 16 * j, 'area.offset', a.offset).u64(at + 24 + 16 * j, 'area.size', a.size);
      });
    } else if (isTypeCap(c)) {
      w.u32(at + 8, 'type', c.type).u32(at + 12, 'subtype', c.subtype);
    } else {
      w.bytes(at + 8, (c as UnknownCap).data);
    }
    at += sz;
  });
  return w.buf;
}

/**
 * Encodes the struct followed by `info.caps`, written as given. When caps are
 * present, cap_offset is forced to 32 and the CAPS flag is set; when absent,
 * cap_offset is `info.capOffset` as given (normally 0). argsz is written as
 * given: use buildRegionInfoReply for libvfio-user's truncation rules.
 */
export function encodeRegionInfoReply(info: RegionInfo): Uint8Array {
  const chain = encodeCapChain(info.caps);
  const hasCaps = info.caps.length > 0;
  return new Writer(REGION_INFO_SIZE + chain.length)
    .u32(0, 'argsz', info.argsz)
    .u32(4, 'flags', hasCaps ? (info.flags | RegionInfoFlags.CAPS) >>> 0 : info.flags)
    .u32(8, 'index', info.index)
    .u32(12, 'capOffset', hasCaps ? REGION_INFO_SIZE : info.capOffset)
    .u64(16, 'size', info.size)
    .u64(24, 'offset', info.offset)
    .bytes(REGION_INFO_SIZE, chain).buf;
}

/** A region as a server describes it, from which buildRegionInfoReply builds the reply. */
export interface RegionDescription {
  index: number;
  /** READ/WRITE (and MMAP when mappable; buildRegionInfoReply adds MMAP when `hasFd`). */
  flags: number;
  size: bigint;
  offset?: bigint;
  /** True when the region has an fd the client may mmap. */
  hasFd?: boolean;
  /** Caps to send when they fit (e.g. a sparse-mmap cap). */
  caps?: RegionCap[];
}

/**
 * libvfio-user's reply algorithm: `needed = 32 + capsSize` (caps only when
 * the region's size > 0); payload = min(needed, reqArgsz) bytes; argsz field
 * = needed; MMAP whenever the region has an fd; if reqArgsz ≥ needed the caps
 * are appended with CAPS / cap_offset 32 and the region fd must be attached
 * (`attachFd`), otherwise no CAPS, cap_offset 0 and no fd.
 */
export function buildRegionInfoReply(region: RegionDescription, reqArgsz: number): { payload: Uint8Array; attachFd: boolean } {
  const caps = region.size > 0n ? (region.caps ?? []) : [];
  const needed = REGION_INFO_SIZE + capsSize(caps);
  const fits = reqArgsz >= needed;
  let flags = region.flags & ~RegionInfoFlags.CAPS;
  if (region.hasFd) flags |= RegionInfoFlags.MMAP;
  const payload = encodeRegionInfoReply({
    argsz: needed,
    flags: flags >>> 0,
    index: region.index,
    capOffset: 0,
    size: region.size,
    offset: region.offset ?? 0n,
    caps: fits ? caps : [],
  });
  return { payload, attachFd: fits && region.hasFd === true };
}

function decodeCap(payload: Uint8Array, dv: DataView, at: number, next: number): RegionCap {
  const id = u16(dv, at);
  const version = u16(dv, at + 2);
  if (id === RegionCapId.SPARSE_MMAP) {
    if (at + 16 > payload.length) throw einval('sparse-mmap cap truncated');
    const n = u32(dv, at + 8);
    if (n > (payload.length - at - 16) / 16) throw einval(`sparse-mmap cap: ${n} areas do not fit`);
    const areas: SparseMmapArea[] = [];
    for (let j = 0; j < n; j++) areas.push({ offset: u64(dv, at + 16 + 16 * j), size: u64(dv, at + 24 + 16 * j) });
    return { id, version, areas };
  }
  if (id === RegionCapId.TYPE) {
    if (at + 16 > payload.length) throw einval('type cap truncated');
    return { id, version, type: u32(dv, at + 8), subtype: u32(dv, at + 12) };
  }
  // Unknown cap: its body runs to the next cap, or to the end of the payload.
  const end = next > at ? Math.min(next, payload.length) : payload.length;
  return { id, version, data: copyBytes(payload, at + CAP_HEADER_SIZE, end) };
}

/**
 * Decodes a reply. Short payload → EINVAL. Caps are parsed when CAPS is set,
 * cap_offset ≠ 0 and the payload holds them (a truncated reply, argsz >
 * payload, has none). A cap offset outside [32, payload), a truncated cap or
 * a loop in the chain → EINVAL.
 */
export function decodeRegionInfoReply(payload: Uint8Array): RegionInfo {
  need(payload, REGION_INFO_SIZE, 'DEVICE_GET_REGION_INFO reply');
  const dv = viewOf(payload);
  const info: RegionInfo = {
    argsz: u32(dv, 0),
    flags: u32(dv, 4),
    index: u32(dv, 8),
    capOffset: u32(dv, 12),
    size: u64(dv, 16),
    offset: u64(dv, 24),
    caps: [],
  };
  if ((info.flags & RegionInfoFlags.CAPS) === 0 || info.capOffset === 0 || payload.length === REGION_INFO_SIZE) return info;
  const seen = new Set<number>();
  let at = info.capOffset;
  while (at !== 0) {
    if (at < REGION_INFO_SIZE || at + CAP_HEADER_SIZE > payload.length) throw einval(`cap offset ${at} outside the reply`);
    if (seen.has(at) || seen.size >= MAX_CAPS) throw einval('loop in the cap chain');
    seen.add(at);
    const next = u32(dv, at + 4);
    info.caps.push(decodeCap(payload, dv, at, next));
    at = next;
  }
  return info;
}
