import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  addU32,
  isPowerOfTwo,
  isU32,
  isU64,
  rangeContains,
  rangeEnd,
  rangeFits,
  rangesOverlap,
  rangeWithin,
  U32_MAX,
  U64_MAX,
} from '../../src/protocol/ranges.js';
import { u64 } from './helpers/util.js';

const TWO64 = 1n << 64n;

describe('u64 range helpers near 2^64', () => {
  it('constants and predicates', () => {
    assert.equal(U64_MAX, 0xffff_ffff_ffff_ffffn);
    assert.equal(U32_MAX, 0xffffffff);
    assert.ok(isU64(U64_MAX) && isU64(0n));
    assert.ok(!isU64(TWO64) && !isU64(-1n) && !isU64(5));
    assert.ok(isU32(U32_MAX) && !isU32(U32_MAX + 1) && !isU32(-1) && !isU32(1.5));
  });

  it('rangeWithin does not wrap', () => {
    assert.ok(rangeWithin(0n, U64_MAX, U64_MAX));
    assert.ok(rangeWithin(U64_MAX, 0n, U64_MAX));
    assert.ok(!rangeWithin(U64_MAX, 1n, U64_MAX));
    assert.ok(!rangeWithin(U64_MAX, 2n, U64_MAX)); // C would wrap to 1 and say yes
    assert.ok(!rangeWithin(1n, U64_MAX, U64_MAX));
    assert.ok(!rangeWithin(U64_MAX - 4095n, 4096n, U64_MAX));
    assert.ok(rangeWithin(U64_MAX - 4095n, 4095n, U64_MAX));
    assert.ok(rangeWithin(4096n, 0n, 4096n));
    assert.ok(!rangeWithin(4097n, 0n, 4096n));
    assert.ok(!rangeWithin(0n, TWO64, U64_MAX)); // out of u64
    assert.ok(!rangeWithin(-1n, 1n, 10n));
  });

  it('rangeFits / rangeEnd allow a range ending exactly at 2^64', () => {
    assert.ok(rangeFits(U64_MAX, 1n));
    assert.equal(rangeEnd(U64_MAX, 1n), TWO64);
    assert.ok(!rangeFits(U64_MAX, 2n));
    assert.equal(rangeEnd(U64_MAX, 2n), undefined);
    assert.ok(rangeFits(0n, U64_MAX));
    assert.ok(rangeFits(1n, U64_MAX));
    assert.ok(!rangeFits(2n, U64_MAX));
    assert.ok(rangeFits(U64_MAX, 0n));
  });

  it('rangesOverlap near the top', () => {
    assert.ok(rangesOverlap(U64_MAX, 1n, U64_MAX - 10n, 11n));
    assert.ok(!rangesOverlap(U64_MAX, 1n, U64_MAX - 10n, 10n));
    assert.ok(rangesOverlap(0n, U64_MAX, U64_MAX - 1n, 1n));
    assert.ok(!rangesOverlap(0n, U64_MAX, U64_MAX, 1n));
    assert.ok(!rangesOverlap(5n, 0n, 0n, 10n));
    assert.ok(!rangesOverlap(0n, 4096n, 4096n, 4096n));
    assert.ok(rangesOverlap(0n, 4097n, 4096n, 4096n));
  });

  it('rangeContains', () => {
    assert.ok(rangeContains(0n, U64_MAX, U64_MAX - 1n, 1n));
    assert.ok(!rangeContains(0n, U64_MAX, U64_MAX, 1n));
    assert.ok(rangeContains(U64_MAX - 4095n, 4096n, U64_MAX, 1n));
    assert.ok(!rangeContains(4096n, 4096n, 4095n, 2n));
    assert.ok(rangeContains(4096n, 4096n, 8192n, 0n));
  });

  it('addU32 and isPowerOfTwo', () => {
    assert.equal(addU32(U32_MAX, 0), U32_MAX);
    assert.equal(addU32(U32_MAX, 1), undefined);
    assert.equal(addU32(-1, 1), undefined);
    assert.ok(isPowerOfTwo(1n) && isPowerOfTwo(4096n) && isPowerOfTwo(1n << 63n));
    assert.ok(!isPowerOfTwo(0n) && !isPowerOfTwo(3n) && !isPowerOfTwo(4097n));
  });

  it('agrees with a brute-force model on random u64s', () => {
    const near = fc.oneof(u64(), fc.bigInt({ min: U64_MAX - 100n, max: U64_MAX }), fc.bigInt({ min: 0n, max: 100n }));
    fc.assert(
      fc.property(near, near, near, (o, c, s) => {
        assert.equal(rangeWithin(o, c, s), o + c <= s);
        assert.equal(rangeFits(o, c), o + c <= TWO64);
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(near, near, near, near, (a, al, b, bl) => {
        const model = al > 0n && bl > 0n && a < b + bl && b < a + al;
        assert.equal(rangesOverlap(a, al, b, bl), model);
        assert.equal(rangesOverlap(a, al, b, bl), rangesOverlap(b, bl, a, al));
      }),
      { numRuns: 1000 },
    );
  });
});
