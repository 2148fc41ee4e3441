import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import {
  decodeDmaReadReply,
  decodeDmaReadRequest,
  decodeDmaWriteReply,
  decodeDmaWriteRequest,
  encodeDmaReadReply,
  encodeDmaReadRequest,
  encodeDmaWriteReply,
  encodeDmaWriteRequest,
} from '../../src/protocol/dma-rw.js';
import { assertBytes, assertProtocolError, assertTotal, hex, shifted, u64 } from './helpers/util.js';

describe('DMA_READ / DMA_WRITE (server → client)', () => {
  it('DMA_READ of 16 bytes: request 16, reply 32 (msg_size 48)', () => {
    const req = hex('0010000000000000 1000000000000000');
    assertBytes(encodeDmaReadRequest({ address: 0x1000n, count: 16n }), req);
    assert.deepEqual(decodeDmaReadRequest(shifted(req)), { address: 0x1000n, count: 16n });
    const data = hex('000102030405060708090a0b0c0d0e0f');
    const rep = encodeDmaReadReply({ address: 0x1000n, count: 16n, data });
    assert.equal(rep.length, 32);
    assertBytes(rep, new Uint8Array([...req, ...data]));
    assert.deepEqual(decodeDmaReadReply(rep), { address: 0x1000n, count: 16n, data });
  });

  it('DMA_WRITE: request 16 + count, reply 16-byte echo', () => {
    const req = hex('0020000000000000 0400000000000000 deadbeef');
    const w = { address: 0x2000n, count: 4n, data: hex('deadbeef') };
    assertBytes(encodeDmaWriteRequest(w), req);
    assert.deepEqual(decodeDmaWriteRequest(req), w);
    const rep = hex('0020000000000000 0400000000000000');
    assertBytes(encodeDmaWriteReply({ address: 0x2000n, count: 4n }), rep);
    assert.deepEqual(decodeDmaWriteReply(rep), { address: 0x2000n, count: 4n });
    // SPEC's 12-byte variant and QEMU 10.1's header-only reply
    assert.deepEqual(decodeDmaWriteReply(hex('0020000000000000 04000000')), { address: 0x2000n, count: 4n });
    assert.equal(decodeDmaWriteReply(new Uint8Array(0)), null);
  });

  it('errors: short → EINVAL, oversize → E2BIG', () => {
    assertProtocolError(() => decodeDmaReadRequest(hex('0010000000000000 10000000')), Errno.EINVAL); // {u64,u32}
    assertProtocolError(() => decodeDmaReadRequest(hex('0010000000000000 0100100000000000')), Errno.E2BIG); // > 1 MiB
    assert.equal(decodeDmaReadRequest(hex('0010000000000000 0100100000000000'), { maxCount: 1 << 21 }).count, 0x100001n);
    assertProtocolError(() => decodeDmaReadRequest(hex('0010000000000000 0000000000000000 00')), Errno.E2BIG);
    assertProtocolError(() => decodeDmaWriteRequest(hex('0010000000000000 0400000000000000 aabbcc')), Errno.EINVAL);
    assertProtocolError(() => decodeDmaWriteRequest(hex('0010000000000000 0200000000000000 aabbcc')), Errno.E2BIG);
    // {u64 addr, u32 count} + data: the count swallows data bytes
    assertProtocolError(() => decodeDmaWriteRequest(hex('0010000000000000 04000000 aabbccdd')), Errno.E2BIG);
    assertProtocolError(() => decodeDmaWriteRequest(hex('0010000000000000 ffffffffffffffff')), Errno.E2BIG);
    assertProtocolError(() => decodeDmaReadReply(hex('0010000000000000 0400000000000000 aabbcc')), Errno.EINVAL);
    assertProtocolError(() => decodeDmaWriteReply(new Uint8Array(8)), Errno.EINVAL);
    assertProtocolError(() => encodeDmaWriteRequest({ address: 0n, count: 3n, data: hex('aa') }), Errno.EINVAL);
  });

  it('round-trips and is total', () => {
    fc.assert(
      fc.property(u64(), fc.uint8Array({ maxLength: 64 }), (address, data) => {
        const a = { address, count: BigInt(data.length) };
        assert.deepEqual(decodeDmaReadRequest(encodeDmaReadRequest(a)), a);
        assert.deepEqual(decodeDmaReadReply(encodeDmaReadReply({ ...a, data })), { ...a, data });
        assert.deepEqual(decodeDmaWriteRequest(encodeDmaWriteRequest({ ...a, data })), { ...a, data });
      }),
    );
    fc.assert(fc.property(u64(), u64(), (address, count) => assert.deepEqual(decodeDmaWriteReply(encodeDmaWriteReply({ address, count })), { address, count })));
    assertTotal(decodeDmaReadRequest);
    assertTotal(decodeDmaReadReply);
    assertTotal(decodeDmaWriteRequest);
    assertTotal(decodeDmaWriteReply);
  });
});
