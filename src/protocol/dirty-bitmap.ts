// Dirty-page bitmaps of DMA logging (§4.5). Bit i = page i of the range,
// counting from its iova; LSB-first within little-endian u64 words, which is
// the same as LSB-first within bytes: bit i lives in byte i>>3, mask
// 1 << (i & 7). A bitmap covering `length` bytes with `pageSize` pages has
// ceil(ceil(length/pageSize)/64)*8 bytes.
import { e2big, einval } from './errors.js';
import { isPowerOfTwo, isU64 } from './ranges.js';

/** Largest bitmap the helpers will allocate (QEMU's max_bitmap_size, 256 MiB). */
export const MAX_BITMAP_BYTES = 256 * 1024 * 1024;

function checkPageSize(pageSize: bigint): void {
  if (!isU64(pageSize) || pageSize === 0n) throw einval(`page size ${String(pageSize)} must be a non-zero u64`);
}

/** Pages covering `length` bytes: ceil(length / pageSize). */
export function bitmapPages(length: bigint, pageSize: bigint): bigint {
  checkPageSize(pageSize);
  if (!isU64(length)) throw einval('length must be a u64');
  return (length + pageSize - 1n) / pageSize;
}

/**
 * Bitmap size in bytes: ceil(ceil(length/pageSize)/64)*8. pageSize 0 →
 * EINVAL; more than MAX_BITMAP_BYTES → E2BIG.
 */
export function bitmapByteSize(length: bigint, pageSize: bigint): number {
  const words = (bitmapPages(length, pageSize) + 63n) / 64n;
  const bytes = words * 8n;
  if (bytes > BigInt(MAX_BITMAP_BYTES)) throw e2big(`bitmap of ${bytes} bytes is too large`);
  return Number(bytes);
}

/** A zeroed bitmap for `length` bytes of `pageSize` pages. */
export function allocBitmap(length: bigint, pageSize: bigint): Uint8Array {
  return new Uint8Array(bitmapByteSize(length, pageSize));
}

function checkBit(bm: Uint8Array, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= bm.length * 8) throw einval(`bit ${i} outside a ${bm.length}-byte bitmap`);
}

/** Sets bit `i` (page `i`) of a dirty bitmap. */
export function bitmapSet(bm: Uint8Array, i: number): void {
  checkBit(bm, i);
  bm[i >>> 3]! |= 1 << (i & 7);
}

/** Clears bit `i` of a dirty bitmap. */
export function bitmapClear(bm: Uint8Array, i: number): void {
  checkBit(bm, i);
  bm[i >>> 3]! &= ~(1 << (i & 7));
}

/** True when bit `i` of a dirty bitmap is set. */
export function bitmapTest(bm: Uint8Array, i: number): boolean {
  checkBit(bm, i);
  return (bm[i >>> 3]! & (1 << (i & 7))) !== 0;
}

/** Indexes of all set bits, ascending. */
export function bitmapSetBits(bm: Uint8Array): number[] {
  const out: number[] = [];
  for (let b = 0; b < bm.length; b++) {
    const v = bm[b]!;
    if (v === 0) continue;
    for (let k = 0; k < 8; k++) if (v & (1 << k)) out.push(b * 8 + k);
  }
  return out;
}

/**
 * Marks every page touched by bytes [offset, offset+len) of the range
 * (offset relative to the range's iova). len 0 marks nothing. A page outside
 * the bitmap → EINVAL.
 */
export function bitmapMarkRange(bm: Uint8Array, pageSize: bigint, offset: bigint, len: bigint): void {
  checkPageSize(pageSize);
  if (!isU64(offset) || !isU64(len)) throw einval('offset and len must be u64');
  if (len === 0n) return;
  const first = offset / pageSize;
  const last = (offset + len - 1n) / pageSize;
  if (last >= BigInt(bm.length * 8)) throw einval('range runs past the bitmap');
  for (let p = Number(first); p <= Number(last); p++) bm[p >>> 3]! |= 1 << (p & 7);
}

/**
 * Re-expresses a bitmap of `length` bytes logged at `srcPageSize` in pages of
 * `dstPageSize`: a destination page is dirty when any source page
 * overlapping it is, so a smaller report page size repeats bits and a larger
 * one ORs them (libvfio-user's behaviour). Both sizes must be powers of two
 * (EINVAL); `src` must be exactly bitmapByteSize(length, srcPageSize) bytes.
 */
export function bitmapConvert(src: Uint8Array, length: bigint, srcPageSize: bigint, dstPageSize: bigint): Uint8Array {
  if (!isPowerOfTwo(srcPageSize) || !isPowerOfTwo(dstPageSize)) throw einval('page sizes must be powers of two');
  if (src.length !== bitmapByteSize(length, srcPageSize)) throw einval('source bitmap has the wrong size');
  const dst = allocBitmap(length, dstPageSize);
  const srcPages = bitmapPages(length, srcPageSize);
  for (const k of bitmapSetBits(src)) {
    const kb = BigInt(k);
    if (kb >= srcPages) continue; // padding bits beyond the range
    const start = kb * srcPageSize;
    const end = start + srcPageSize < length ? start + srcPageSize : length;
    bitmapMarkRange(dst, dstPageSize, start, end - start);
  }
  return dst;
}
