// DMA_MAP (2) and DMA_UNMAP (3) (§2.2, §2.3). u64 fields are bigint.
import { einval } from './errors.js';
import { DMA_MAP_FLAGS_MASK, DmaMapFlags, DmaUnmapFlags } from './constants.js';
import { checkBytes, copyBytes, DEFAULT_MAX_DATA_XFER_SIZE, need, u32, u64, viewOf, Writer } from './wire.js';

/** Bytes of a DMA_MAP request. */
export const DMA_MAP_REQUEST_SIZE = 32;
/** Bytes of a DMA_UNMAP request without a bitmap. */
export const DMA_UNMAP_REQUEST_SIZE = 24;
/** Bytes of the bitmap header a migration v1 DMA_UNMAP carries (refused by servers). */
export const DMA_UNMAP_BITMAP_HEADER_SIZE = 16;
/** libvfio-user refuses an UNMAP argsz above this. */
export const DMA_UNMAP_MAX_ARGSZ = DEFAULT_MAX_DATA_XFER_SIZE;

/** DMA_MAP request: a range of guest memory (IOVA), its access, and its offset in the fd sent along (if any). */
export interface DmaMapRequest {
  /** Defaults to 32 when encoding. */
  argsz?: number;
  flags: number;
  /** Offset of the region within the attached fd (0 without fd). */
  offset: bigint;
  /** IOVA. */
  address: bigint;
  size: bigint;
}

/** 32-byte DMA_MAP request payload. */
export function encodeDmaMapRequest(r: DmaMapRequest): Uint8Array {
  return new Writer(DMA_MAP_REQUEST_SIZE)
    .u32(0, 'argsz', r.argsz ?? DMA_MAP_REQUEST_SIZE)
    .u32(4, 'flags', r.flags)
    .u64(8, 'offset', r.offset)
    .u64(16, 'address', r.address)
    .u64(24, 'size', r.size).buf;
}

/**
 * Payload < 32 or argsz < 32 → EINVAL; flags outside READ|WRITE|MMAP|FILE_IO
 * → EINVAL; MMAP together with FILE_IO → EINVAL. Whether MMAP/FILE_IO came
 * with an fd is for the caller (it holds the fds).
 */
export function decodeDmaMapRequest(payload: Uint8Array): Required<DmaMapRequest> {
  need(payload, DMA_MAP_REQUEST_SIZE, 'DMA_MAP');
  const dv = viewOf(payload);
  const argsz = u32(dv, 0);
  const flags = u32(dv, 4);
  if (argsz < DMA_MAP_REQUEST_SIZE) throw einval(`DMA_MAP argsz ${argsz} < 32`);
  if ((flags & ~DMA_MAP_FLAGS_MASK) !== 0) throw einval(`DMA_MAP unknown flags 0x${flags.toString(16)}`);
  if ((flags & DmaMapFlags.MMAP) !== 0 && (flags & DmaMapFlags.FILE_IO) !== 0) throw einval('DMA_MAP: MMAP and FILE_IO are exclusive');
  return { argsz, flags, offset: u64(dv, 8), address: u64(dv, 16), size: u64(dv, 24) };
}

/** DMA_MAP replies carry no payload. */
export function encodeDmaMapReply(): Uint8Array {
  return new Uint8Array(0);
}
/** Accepts only an empty payload. */
export function decodeDmaMapReply(payload: Uint8Array): void {
  need(payload, 0, 'DMA_MAP reply');
  if (payload.length !== 0) throw einval(`DMA_MAP reply has ${payload.length} unexpected bytes`);
}

/** The dirty-bitmap part of a migration v1 DMA_UNMAP (GET_DIRTY_BITMAP flag). */
export interface DmaUnmapBitmapRequest {
  pgsize: bigint;
  /** Bitmap size in bytes. */
  size: bigint;
}

/** DMA_UNMAP request: the range to unmap, or every range with the ALL flag. */
export interface DmaUnmapRequest {
  /** Maximum reply size the client accepts. Defaults to the minimum reply size. */
  argsz?: number;
  flags: number;
  address: bigint;
  size: bigint;
  /** Present exactly when flags has GET_DIRTY_BITMAP (legacy). */
  bitmap?: DmaUnmapBitmapRequest;
}

/** DMA_UNMAP reply: the request echoed (with a bitmap for migration v1). */
export interface DmaUnmapReply {
  argsz: number;
  flags: number;
  address: bigint;
  size: bigint;
  /** Legacy GET_DIRTY_BITMAP: the echoed {pgsize,size} and the bitmap bytes. */
  bitmap?: DmaUnmapBitmapRequest & { data: Uint8Array };
}

/** Reply size a request needs: 24, or 24 + 16 + bitmap size with GET_DIRTY_BITMAP. */
export function dmaUnmapReplySize(r: Pick<DmaUnmapRequest, 'bitmap'>): bigint {
  return r.bitmap ? BigInt(DMA_UNMAP_REQUEST_SIZE + DMA_UNMAP_BITMAP_HEADER_SIZE) + r.bitmap.size : BigInt(DMA_UNMAP_REQUEST_SIZE);
}

function defaultUnmapArgsz(r: DmaUnmapRequest): number {
  const needed = dmaUnmapReplySize(r);
  if (needed > 0xffffffffn) throw einval('DMA_UNMAP: bitmap too large for argsz');
  return Number(needed);
}

/** 24-byte request (40 with GET_DIRTY_BITMAP). argsz defaults to the reply size needed. */
export function encodeDmaUnmapRequest(r: DmaUnmapRequest): Uint8Array {
  const withBitmap = (r.flags & DmaUnmapFlags.GET_DIRTY_BITMAP) !== 0;
  if (withBitmap !== (r.bitmap !== undefined)) throw einval('DMA_UNMAP: bitmap must be given exactly with GET_DIRTY_BITMAP');
  const size = withBitmap ? DMA_UNMAP_REQUEST_SIZE + DMA_UNMAP_BITMAP_HEADER_SIZE : DMA_UNMAP_REQUEST_SIZE;
  const w = new Writer(size)
    .u32(0, 'argsz', r.argsz ?? defaultUnmapArgsz(r))
    .u32(4, 'flags', r.flags)
    .u64(8, 'address', r.address)
    .u64(16, 'size', r.size);
  if (r.bitmap) w.u64(24, 'bitmap.pgsize', r.bitmap.pgsize).u64(32, 'bitmap.size', r.bitmap.size);
  return w.buf;
}

/**
 * Payload < 24 (40 with GET_DIRTY_BITMAP) → EINVAL; flags other than 0, 1, 2
 * → EINVAL; ALL with a non-zero address or size → EINVAL; argsz smaller than
 * the reply needs or larger than 1 MiB → EINVAL (libvfio-user's rules).
 */
export function decodeDmaUnmapRequest(payload: Uint8Array): Required<Omit<DmaUnmapRequest, 'bitmap'>> & Pick<DmaUnmapRequest, 'bitmap'> {
  need(payload, DMA_UNMAP_REQUEST_SIZE, 'DMA_UNMAP');
  const dv = viewOf(payload);
  const argsz = u32(dv, 0);
  const flags = u32(dv, 4);
  const address = u64(dv, 8);
  const size = u64(dv, 16);
  if (flags !== 0 && flags !== DmaUnmapFlags.GET_DIRTY_BITMAP && flags !== DmaUnmapFlags.ALL) {
    throw einval(`DMA_UNMAP bad flags 0x${flags.toString(16)}`);
  }
  if (flags === DmaUnmapFlags.ALL && (address !== 0n || size !== 0n)) throw einval('DMA_UNMAP ALL needs address 0 and size 0');
  let bitmap: DmaUnmapBitmapRequest | undefined;
  if (flags === DmaUnmapFlags.GET_DIRTY_BITMAP) {
    need(payload, DMA_UNMAP_REQUEST_SIZE + DMA_UNMAP_BITMAP_HEADER_SIZE, 'DMA_UNMAP with GET_DIRTY_BITMAP');
    bitmap = { pgsize: u64(dv, 24), size: u64(dv, 32) };
  }
  const needed = dmaUnmapReplySize({ bitmap });
  if (BigInt(argsz) < needed) throw einval(`DMA_UNMAP argsz ${argsz} < ${needed}`);
  if (argsz > DMA_UNMAP_MAX_ARGSZ) throw einval(`DMA_UNMAP argsz ${argsz} > 1 MiB`);
  return bitmap ? { argsz, flags, address, size, bitmap } : { argsz, flags, address, size };
}

/** Reply: the 24-byte request echo (+16 + bitmap data with GET_DIRTY_BITMAP). */
export function encodeDmaUnmapReply(r: DmaUnmapReply): Uint8Array {
  const data = r.bitmap ? checkBytes('bitmap.data', r.bitmap.data) : undefined;
  const size = DMA_UNMAP_REQUEST_SIZE + (data ? DMA_UNMAP_BITMAP_HEADER_SIZE + data.length : 0);
  const w = new Writer(size)
    .u32(0, 'argsz', r.argsz)
    .u32(4, 'flags', r.flags)
    .u64(8, 'address', r.address)
    .u64(16, 'size', r.size);
  if (r.bitmap && data) {
    w.u64(24, 'bitmap.pgsize', r.bitmap.pgsize).u64(32, 'bitmap.size', r.bitmap.size).bytes(40, data);
    if (r.bitmap.size !== BigInt(data.length)) throw einval('DMA_UNMAP reply: bitmap.size differs from data length');
  }
  return w.buf;
}

/**
 * Reply < 24 → EINVAL. With GET_DIRTY_BITMAP in the echoed flags, the
 * bitmap header and exactly `size` bitmap bytes must follow (else EINVAL).
 */
export function decodeDmaUnmapReply(payload: Uint8Array): DmaUnmapReply {
  need(payload, DMA_UNMAP_REQUEST_SIZE, 'DMA_UNMAP reply');
  const dv = viewOf(payload);
  const r: DmaUnmapReply = { argsz: u32(dv, 0), flags: u32(dv, 4), address: u64(dv, 8), size: u64(dv, 16) };
  if ((r.flags & DmaUnmapFlags.GET_DIRTY_BITMAP) !== 0) {
    need(payload, DMA_UNMAP_REQUEST_SIZE + DMA_UNMAP_BITMAP_HEADER_SIZE, 'DMA_UNMAP reply bitmap');
    const pgsize = u64(dv, 24);
    const size = u64(dv, 32);
    if (BigInt(payload.length - 40) !== size) throw einval(`DMA_UNMAP reply bitmap: ${payload.length - 40} bytes, size says ${size}`);
    r.bitmap = { pgsize, size, data: copyBytes(payload, 40) };
  } else if (payload.length !== DMA_UNMAP_REQUEST_SIZE) {
    throw einval(`DMA_UNMAP reply: ${payload.length} bytes, expected 24`);
  }
  return r;
}
