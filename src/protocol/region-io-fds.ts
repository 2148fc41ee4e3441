// DEVICE_GET_REGION_IO_FDS (6) (§2.6). Optional: QEMU never sends it.
//
// Request (16): u32 argsz, u32 flags (0), u32 index, u32 count (0).
// Reply: the same 16-byte header (argsz = 16 + count·entrySize, count =
// number of sub-regions) then `count` entries, fds in ancillary data.
//
// Entry layouts disagree, so both are supported:
//  * 'spec' (default, 40 bytes): u64 offset, u64 size, u32 fd_index,
//    u32 type, u32 flags, u32 padding, u64 datamatch (user_data for type 1).
//  * 'lvu' (48 bytes, libvfio-user, all types): u64 gpa_offset, u64 size,
//    u32 fd_index, u32 type, u32 flags, u32 shadow_mem_fd_index,
//    u64 shadow_offset, u64 datamatch.
// The SPEC layout is the default because it is normative; pass
// `{ layout: 'lvu' }` to talk to libvfio-user peers.
import { einval } from './errors.js';
import { DEFAULT_MAX_DATA_XFER_SIZE, need, u32, u64, viewOf, Writer } from './wire.js';

/** Bytes of a GET_REGION_IO_FDS request and of a reply before its entries. */
export const REGION_IO_FDS_HEADER_SIZE = 16;
/** Bytes per io-fd entry in the spec's layout. */
export const IO_FD_ENTRY_SIZE_SPEC = 40;
/** Bytes per io-fd entry in libvfio-user's layout (with shadow offset). */
export const IO_FD_ENTRY_SIZE_LVU = 48;
/** libvfio-user refuses an argsz above 1 MiB. */
export const REGION_IO_FDS_MAX_ARGSZ = DEFAULT_MAX_DATA_XFER_SIZE;

/** Which io-fd entry layout to use: the spec's or libvfio-user's. */
export type IoFdLayout = 'spec' | 'lvu';
/** Chooses the io-fd entry layout of an encoder or decoder. */
export interface IoFdLayoutOptions {
  layout?: IoFdLayout;
}

/** Bytes per io-fd entry in a layout. */
export const ioFdEntrySize = (layout: IoFdLayout = 'spec'): number =>
  layout === 'lvu' ? IO_FD_ENTRY_SIZE_LVU : IO_FD_ENTRY_SIZE_SPEC;

/** GET_REGION_IO_FDS request: the region and the reply space the client allows. */
export interface RegionIoFdsRequest {
  /** Largest reply accepted. Defaults to 16. */
  argsz?: number;
  index: number;
}

/** One ioeventfd (or ioregionfd) of a region: where it triggers and which fd it is. */
export interface IoFdEntry {
  /** Offset in the region (gpa_offset in LVU). */
  offset: bigint;
  /** 0 = any access size. */
  size: bigint;
  /** Index into the fds attached to the reply. */
  fdIndex: number;
  /** IoFdType. */
  type: number;
  /** KvmIoeventfdFlags (ioeventfd) or ioregionfd flags. */
  flags: number;
  /** datamatch (ioeventfd) or user_data (ioregionfd). */
  datamatch: bigint;
  /** LVU layout only (0 in the SPEC layout). */
  shadowMemFdIndex?: number;
  /** LVU layout only (0 in the SPEC layout). */
  shadowOffset?: bigint;
}

/** GET_REGION_IO_FDS reply: the region's io-fd entries (their fds travel with the message). */
export interface RegionIoFdsReply {
  argsz: number;
  flags: number;
  index: number;
  /** Total number of sub-regions (entries may be absent if argsz was too small). */
  count: number;
  entries: IoFdEntry[];
}

/** Encodes a 16-byte GET_REGION_IO_FDS request. */
export function encodeRegionIoFdsRequest(r: RegionIoFdsRequest): Uint8Array {
  return new Writer(REGION_IO_FDS_HEADER_SIZE).u32(0, 'argsz', r.argsz ?? REGION_IO_FDS_HEADER_SIZE).u32(8, 'index', r.index).buf;
}

/**
 * Short payload, flags ≠ 0, count ≠ 0, argsz < 16 or > 1 MiB → EINVAL.
 * The index is for the caller to check (it knows which regions exist).
 */
export function decodeRegionIoFdsRequest(payload: Uint8Array): Required<RegionIoFdsRequest> {
  need(payload, REGION_IO_FDS_HEADER_SIZE, 'DEVICE_GET_REGION_IO_FDS');
  const dv = viewOf(payload);
  const argsz = u32(dv, 0);
  if (u32(dv, 4) !== 0) throw einval('DEVICE_GET_REGION_IO_FDS flags must be 0');
  if (u32(dv, 12) !== 0) throw einval('DEVICE_GET_REGION_IO_FDS count must be 0');
  if (argsz < REGION_IO_FDS_HEADER_SIZE || argsz > REGION_IO_FDS_MAX_ARGSZ) throw einval(`DEVICE_GET_REGION_IO_FDS bad argsz ${argsz}`);
  return { argsz, index: u32(dv, 8) };
}

/** Encodes header + all `entries` as given (count/argsz written as given). */
export function encodeRegionIoFdsReply(r: RegionIoFdsReply, opts: IoFdLayoutOptions = {}): Uint8Array {
  const layout = opts.layout ?? 'spec';
  const es = ioFdEntrySize(layout);
  const w = new Writer(REGION_IO_FDS_HEADER_SIZE + es * r.entries.length)
    .u32(0, 'argsz', r.argsz)
    .u32(4, 'flags', r.flags)
    .u32(8, 'index', r.index)
    .u32(12, 'count', r.count);
  r.entries.forEach((e, i) => {
    const at = REGION_IO_FDS_HEADER_SIZE + es * i;
    w.u64(at, 'offset', e.offset).u64(at + 8, 'size', e.size).u32(at + 16, 'fdIndex', e.fdIndex).u32(at + 20, 'type', e.type).u32(at + 24, 'flags', e.flags);
    if (layout === 'lvu') {
      w.u32(at + 28, 'shadowMemFdIndex', e.shadowMemFdIndex ?? 0).u64(at + 32, 'shadowOffset', e.shadowOffset ?? 0n).u64(at + 40, 'datamatch', e.datamatch);
    } else {
      w.u64(at + 32, 'datamatch', e.datamatch);
    }
  });
  return w.buf;
}

/**
 * libvfio-user's reply rule: argsz = 16 + n·entrySize, count = n; the
 * entries (and the fds) go out only when reqArgsz ≥ that size, otherwise
 * the 16-byte header alone (`attachFds` false).
 */
export function buildRegionIoFdsReply(
  index: number,
  entries: IoFdEntry[],
  reqArgsz: number,
  opts: IoFdLayoutOptions = {},
): { payload: Uint8Array; attachFds: boolean } {
  const argsz = REGION_IO_FDS_HEADER_SIZE + ioFdEntrySize(opts.layout) * entries.length;
  const fits = reqArgsz >= argsz;
  const payload = encodeRegionIoFdsReply({ argsz, flags: 0, index, count: entries.length, entries: fits ? entries : [] }, opts);
  return { payload, attachFds: fits && entries.length > 0 };
}

/**
 * Short payload → EINVAL. A 16-byte payload is a header-only (truncated or
 * empty) reply and has no entries; otherwise exactly `count` entries must
 * follow (EINVAL if not).
 */
export function decodeRegionIoFdsReply(payload: Uint8Array, opts: IoFdLayoutOptions = {}): RegionIoFdsReply {
  need(payload, REGION_IO_FDS_HEADER_SIZE, 'DEVICE_GET_REGION_IO_FDS reply');
  const layout = opts.layout ?? 'spec';
  const es = ioFdEntrySize(layout);
  const dv = viewOf(payload);
  const r: RegionIoFdsReply = { argsz: u32(dv, 0), flags: u32(dv, 4), index: u32(dv, 8), count: u32(dv, 12), entries: [] };
  if (payload.length === REGION_IO_FDS_HEADER_SIZE) return r;
  if (payload.length !== REGION_IO_FDS_HEADER_SIZE + es * r.count) {
    throw einval(`DEVICE_GET_REGION_IO_FDS reply: ${payload.length} bytes for ${r.count} ${es}-byte entries`);
  }
  for (let i = 0; i < r.count; i++) {
    const at = REGION_IO_FDS_HEADER_SIZE + es * i;
    const e: IoFdEntry = { offset: u64(dv, at), size: u64(dv, at + 8), fdIndex: u32(dv, at + 16), type: u32(dv, at + 20), flags: u32(dv, at + 24), datamatch: 0n };
    if (layout === 'lvu') {
      e.shadowMemFdIndex = u32(dv, at + 28);
      e.shadowOffset = u64(dv, at + 32);
      e.datamatch = u64(dv, at + 40);
    } else {
      e.datamatch = u64(dv, at + 32);
    }
    r.entries.push(e);
  }
  return r;
}
