import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import {
  decodeMigDataReadReply,
  decodeMigDataReadRequest,
  decodeMigDataWriteReply,
  decodeMigDataWriteRequest,
  encodeMigDataReadReply,
  encodeMigDataReadRequest,
  encodeMigDataWriteReply,
  encodeMigDataWriteRequest,
} from '../../src/protocol/mig-data.js';
import { assertBytes, assertProtocolError, assertTotal, hex, shifted } from './helpers/util.js';

describe('MIG_DATA_READ / MIG_DATA_WRITE', () => {
  it('sample client read {argsz 1032, size 1024}', () => {
    const req = hex('08040000 00040000');
    assertBytes(encodeMigDataReadRequest({ size: 1024 }), req);
    assert.deepEqual(decodeMigDataReadRequest(shifted(req)), { argsz: 1032, size: 1024 });
  });

  it('read reply: 8 + size, padded with zeros to the requested size', () => {
    const data = hex('0102030405060708');
    const exact = encodeMigDataReadReply(data);
    assertBytes(exact, hex('10000000 08000000 0102030405060708'));
    const padded = encodeMigDataReadReply(data, 1024);
    assert.equal(padded.length, 1032);
    assertBytes(padded.subarray(0, 16), exact);
    assert.ok(padded.subarray(16).every((b) => b === 0));
    assert.deepEqual(decodeMigDataReadReply(padded), { argsz: 16, size: 8, data });
    // end of data
    assertBytes(encodeMigDataReadReply(new Uint8Array(0), 4), hex('08000000 00000000 00000000'));
    assert.equal(decodeMigDataReadReply(hex('08000000 00000000')).size, 0);
  });

  it('write: request 8 + size, empty reply (8 bytes tolerated)', () => {
    const req = hex('0c000000 04000000 aabbccdd');
    assertBytes(encodeMigDataWriteRequest(hex('aabbccdd')), req);
    assert.deepEqual(decodeMigDataWriteRequest(req), { argsz: 12, size: 4, data: hex('aabbccdd') });
    assert.equal(encodeMigDataWriteReply().length, 0);
    decodeMigDataWriteReply(new Uint8Array(0));
    decodeMigDataWriteReply(new Uint8Array(8));
    assertProtocolError(() => decodeMigDataWriteReply(new Uint8Array(4)), Errno.EINVAL);
  });

  it('errors', () => {
    assertProtocolError(() => decodeMigDataReadRequest(new Uint8Array(7)), Errno.EINVAL);
    assertProtocolError(() => decodeMigDataReadRequest(hex('07040000 00040000')), Errno.EINVAL); // argsz < 8 + size
    assertProtocolError(() => decodeMigDataReadRequest(hex('ffffffff 01001000')), Errno.E2BIG); // > 1 MiB
    assertProtocolError(() => decodeMigDataReadRequest(hex('08040000 00040000'), { maxSize: 512 }), Errno.E2BIG);
    assertProtocolError(() => decodeMigDataReadReply(hex('10000000 09000000 0102030405060708')), Errno.EINVAL);
    assertProtocolError(() => decodeMigDataWriteRequest(hex('0c000000 04000000 aabbcc')), Errno.EINVAL);
    assertProtocolError(() => decodeMigDataWriteRequest(hex('0b000000 04000000 aabbccdd')), Errno.EINVAL);
    assertProtocolError(() => encodeMigDataReadReply(new Uint8Array(8), 4), Errno.EINVAL);
  });

  it('round-trips and is total', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(64), (data, pad) => {
        assert.deepEqual(decodeMigDataReadReply(encodeMigDataReadReply(data, data.length + pad)), { argsz: 8 + data.length, size: data.length, data });
        assert.deepEqual(decodeMigDataWriteRequest(encodeMigDataWriteRequest(data)), { argsz: 8 + data.length, size: data.length, data });
      }),
    );
    fc.assert(
      fc.property(fc.nat(1 << 20), fc.nat(1000), (size, extra) => {
        const argsz = Math.min(8 + size + extra, 0xffffffff);
        assert.deepEqual(decodeMigDataReadRequest(encodeMigDataReadRequest({ argsz, size })), { argsz, size });
      }),
    );
    assertTotal(decodeMigDataReadRequest);
    assertTotal(decodeMigDataReadReply);
    assertTotal(decodeMigDataWriteRequest);
    assertTotal(decodeMigDataWriteReply);
  });
});
