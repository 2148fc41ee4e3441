// Overflow-safe range arithmetic for u64 wire values. Every u64 the decoders
// produce is a `bigint`, so nothing here can wrap the way C arithmetic does;
// these helpers still reject inputs outside 0..2^64-1 so that a value which
// could never have come off the wire is never silently accepted.

/** 2^64 - 1, the largest u64. */
export const U64_MAX = (1n << 64n) - 1n;
/** 2^32 - 1, the largest u32. */
export const U32_MAX = 0xffff_ffff;
/** 2^16 - 1, the largest u16. */
export const U16_MAX = 0xffff;

/** True for a bigint in 0..2^64-1. */
export const isU64 = (v: unknown): v is bigint => typeof v === 'bigint' && v >= 0n && v <= U64_MAX;
/** True for an integer number in 0..2^32-1. */
export const isU32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= U32_MAX;
/** True for an integer number in 0..65535. */
export const isU16 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= U16_MAX;
/** True for an integer number in 0..255. */
export const isU8 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xff;

/**
 * True when `[offset, offset+count)` is addressable with u64 arithmetic, i.e.
 * its last byte is at most U64_MAX (a range may end exactly at 2^64). Empty
 * ranges always fit. False for inputs outside u64.
 */
export function rangeFits(offset: bigint, count: bigint): boolean {
  if (!isU64(offset) || !isU64(count)) return false;
  return count === 0n || offset + count - 1n <= U64_MAX;
}

/**
 * True when `[offset, offset+count)` lies inside `[0, size)`. Correct for all
 * u64 inputs (no wrap): `rangeWithin(U64_MAX, 2n, U64_MAX)` is false.
 * An empty range at `offset == size` counts as within.
 */
export function rangeWithin(offset: bigint, count: bigint, size: bigint): boolean {
  if (!isU64(offset) || !isU64(count) || !isU64(size)) return false;
  return offset <= size && count <= size - offset;
}

/**
 * True when `[inner, inner+innerLen)` lies inside `[outer, outer+outerLen)`.
 * Both ranges must fit in u64 (see rangeFits).
 */
export function rangeContains(outer: bigint, outerLen: bigint, inner: bigint, innerLen: bigint): boolean {
  if (!rangeFits(outer, outerLen) || !rangeFits(inner, innerLen)) return false;
  return inner >= outer && inner - outer <= outerLen && innerLen <= outerLen - (inner - outer);
}

/**
 * True when the two half-open ranges share at least one byte. Empty ranges
 * overlap nothing. Inputs outside u64 give false.
 */
export function rangesOverlap(a0: bigint, alen: bigint, b0: bigint, blen: bigint): boolean {
  if (!isU64(a0) || !isU64(alen) || !isU64(b0) || !isU64(blen)) return false;
  if (alen === 0n || blen === 0n) return false;
  return a0 < b0 + blen && b0 < a0 + alen;
}

/** Exclusive end `offset + count` (may be exactly 2^64), or undefined if it does not fit. */
export function rangeEnd(offset: bigint, count: bigint): bigint | undefined {
  return rangeFits(offset, count) ? offset + count : undefined;
}

/** `a + b` when the sum is a u32, else undefined (for u32 start+count style checks). */
export function addU32(a: number, b: number): number | undefined {
  if (!isU32(a) || !isU32(b)) return undefined;
  const s = a + b;
  return s <= U32_MAX ? s : undefined;
}

/** True when `v` is a power of two (> 0). */
export function isPowerOfTwo(v: bigint): boolean {
  return v > 0n && (v & (v - 1n)) === 0n;
}
