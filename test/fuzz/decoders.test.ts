// Property tests over every decoder in src/protocol: whatever the bytes, a
// decoder returns or throws ProtocolError (the errno the server replies
// with), never anything else (no RangeError from a DataView, no TypeError,
// no hang). Inputs are arbitrary bytes, and valid messages from the socket
// fuzzer's generator with bytes flipped, cut and extended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as protocol from '../../src/protocol/index.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { decodeHeader } from '../../src/protocol/header.js';
import { parseJson } from '../../src/protocol/json.js';
import { parseCapabilities } from '../../src/protocol/version.js';
import { Framer } from '../../src/transport/framer.js';
import { FramingFatalError } from '../../src/transport/errors.js';
import { Rng, genMessage, newGenState } from './gen.js';

type Decoder = (payload: Uint8Array, ...rest: unknown[]) => unknown;

/** Every decodeX exported by the protocol index, found by name so new ones are covered too. */
const decoders: [string, Decoder][] = Object.entries(protocol)
  .filter(([k, v]) => /^decode/.test(k) && typeof v === 'function')
  .map(([k, v]) => [k, v as Decoder]);

/** Decoders that take a second argument worth varying. */
const secondArgs: Record<string, unknown[]> = {
  decodeRegionReadRequest: [{ maxCount: 1 }, { maxCount: 1048576 }],
  decodeRegionWriteRequest: [{ maxCount: 8 }],
  decodeMigDataReadRequest: [{ maxSize: 16 }],
  decodeMigDataWriteRequest: [{ maxSize: 16 }],
  decodeDmaReadRequest: [{ maxCount: 16 }],
  decodeDmaWriteRequest: [{ maxCount: 16 }],
  decodeRegionInfoRequest: [0, 9, 0xffffffff],
  decodeIrqInfoRequest: [0, 5],
  decodeWriteMultiRequest: [0, 1, 200],
};

function expectOnlyProtocolErrors(name: string, f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (e instanceof ProtocolError && Number.isInteger(e.errno) && e.errno > 0 && e.errno < 4096) return;
    assert.fail(`${name} threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  }
}

/** Bytes shaped like payloads: short, exact sizes, long; sometimes at an odd byteOffset. */
const payloadArb = fc
  .tuple(fc.uint8Array({ maxLength: 300 }), fc.nat(7), fc.boolean())
  .map(([b, shift, shifted]) => {
    if (!shifted) return b;
    const big = new Uint8Array(b.length + shift);
    big.set(b, shift);
    return big.subarray(shift);
  });

test('there are decoders to test (the index exports them)', () => {
  assert.ok(decoders.length >= 30, `found ${decoders.length}: ${decoders.map(([n]) => n).join(', ')}`);
});

test('every decoder: arbitrary bytes give a value or a ProtocolError', () => {
  for (const [name, dec] of decoders) {
    fc.assert(
      fc.property(payloadArb, (p) => {
        expectOnlyProtocolErrors(name, () => dec(p));
        for (const a of secondArgs[name] ?? []) expectOnlyProtocolErrors(name, () => dec(p, a));
      }),
      { numRuns: 400, seed: 0x5eed },
    );
  }
});

test('every decoder: mutated generator messages give a value or a ProtocolError', () => {
  fc.assert(
    fc.property(fc.integer(), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 6 }), fc.nat(64), (seed, flips, cut) => {
      const m = genMessage(new Rng(seed), newGenState());
      const p = m.bytes.slice(16);
      for (const [at, v] of flips) if (p.length > 0) p[at % p.length] = v;
      const variants = [p, p.subarray(0, Math.max(0, p.length - cut)), p.subarray(Math.min(cut, p.length))];
      for (const v of variants) for (const [name, dec] of decoders) expectOnlyProtocolErrors(name, () => dec(v));
    }),
    { numRuns: 300, seed: 42 },
  );
});

test('header decoder: any 16+ bytes decode; fewer are EINVAL', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(40), (b, off) => {
      expectOnlyProtocolErrors('decodeHeader', () => decodeHeader(b, off % (b.length + 1)));
    }),
    { numRuns: 2000 },
  );
});

test('JSON parser and capabilities: any text gives a value or a ProtocolError, deep nesting included', () => {
  const jsonish = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.json({ maxDepth: 6 }),
    fc.constantFrom('['.repeat(100000), '{"a":'.repeat(50000), '"\\ud800"', '1e999999', '-0', '{"capabilities":{"max_msg_fds":1e400}}', '\u0000'),
  );
  fc.assert(
    fc.property(jsonish, (s) => {
      expectOnlyProtocolErrors('parseJson', () => parseJson(s));
      expectOnlyProtocolErrors('parseCapabilities', () => parseCapabilities(s));
    }),
    { numRuns: 1500 },
  );
});

test('framer: any byte stream in any pieces with fds either frames, skips or fails fatally; each fd is handed out exactly once', () => {
  const chunkArb = fc.record({
    bytes: fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.integer().map((s) => genMessage(new Rng(s), newGenState()).bytes)),
    fds: fc.nat(3),
    truncated: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(chunkArb, { maxLength: 30 }), fc.constantFrom(64, 4096, 1 << 20), fc.constantFrom(64, 8192, 64 << 20), (chunks, maxMessageSize, drain) => {
      let next = 1000;
      const handedOut = new Set<number>();
      const take = (fd: number): void => {
        assert.ok(!handedOut.has(fd), `fd ${fd} handed out twice`);
        handedOut.add(fd);
      };
      const framer = new Framer({ maxMessageSize, maxDrainSize: Math.max(drain, maxMessageSize) }, (fds) => fds.forEach(take));
      const sent: number[] = [];
      let dead = false;
      for (const c of chunks) {
        const fds = Array.from({ length: c.fds }, () => next++);
        sent.push(...fds);
        if (dead) {
          assert.throws(() => framer.push(c.bytes, fds, c.truncated), FramingFatalError);
          continue;
        }
        try {
          for (const ev of framer.push(c.bytes, fds, c.truncated)) {
            if (ev.type === 'message') {
              assert.equal(ev.msg.payload.length, ev.msg.header.msgSize - 16);
              assert.ok(ev.msg.header.msgSize <= maxMessageSize);
              ev.msg.fds.forEach(take);
            } else {
              assert.ok(ev.header.msgSize > maxMessageSize);
            }
          }
        } catch (e) {
          assert.ok(e instanceof FramingFatalError, `unexpected ${(e as Error).message}`);
          dead = true;
        }
      }
      framer.reset();
      assert.deepEqual([...handedOut].sort((a, b) => a - b), sent, 'every fd delivered with a message or discarded, once');
    }),
    { numRuns: 1500 },
  );
});
