import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtocolError } from '../../../src/protocol/errors.js';

/** Bytes from a hex string; whitespace and `|` separators are ignored. */
export function hex(s: string): Uint8Array {
  const clean = s.replace(/[\s|]/g, '');
  assert.equal(clean.length % 2, 0, 'odd hex length');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function assertBytes(actual: Uint8Array, expected: Uint8Array, msg?: string): void {
  assert.equal(toHex(actual), toHex(expected), msg);
}

/** Asserts fn throws a ProtocolError with the given errno (or any positive errno). */
export function assertProtocolError(fn: () => unknown, errno?: number): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ProtocolError, `expected ProtocolError, got ${String(e)}`);
    if (errno !== undefined) assert.equal(e.errno, errno, e.message);
    else assert.ok(Number.isInteger(e.errno) && e.errno > 0);
    return;
  }
  assert.fail('expected a ProtocolError, nothing was thrown');
}

/** A decoder fed random bytes either returns or throws a ProtocolError with a positive errno. */
export function assertTotal(decode: (p: Uint8Array) => unknown, maxLength = 300): void {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength }), (bytes) => {
      try {
        decode(bytes);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        if (!(Number.isInteger(e.errno) && e.errno > 0)) throw new Error(`bad errno ${e.errno}`);
      }
    }),
    { numRuns: 500 },
  );
  // Also at an odd offset inside a larger buffer, to catch DataView offset bugs.
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength }), (bytes) => {
      const big = new Uint8Array(bytes.length + 3);
      big.set(bytes, 3);
      try {
        decode(big.subarray(3));
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
      }
    }),
    { numRuns: 100 },
  );
}

export const u64 = (): fc.Arbitrary<bigint> => fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
export const u32 = (): fc.Arbitrary<number> => fc.integer({ min: 0, max: 0xffffffff });
export const u16 = (): fc.Arbitrary<number> => fc.integer({ min: 0, max: 0xffff });
export const bytes = (maxLength = 64): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength });

/** Payload at a non-zero byteOffset of a larger buffer (decoders must honour byteOffset). */
export function shifted(p: Uint8Array, by = 5): Uint8Array {
  const big = new Uint8Array(p.length + by).fill(0xee);
  big.set(p, by);
  return big.subarray(by);
}

/** fast-check records have a null prototype; deep-copy into plain objects for deepEqual. */
export function plain<T>(v: T): T {
  if (typeof v !== 'object' || v === null || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map(plain) as T;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)])) as T;
}
