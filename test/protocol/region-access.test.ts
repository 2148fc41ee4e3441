import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import {
  decodeRegionReadReply,
  decodeRegionReadRequest,
  decodeRegionWriteReply,
  decodeRegionWriteRequest,
  encodeRegionReadReply,
  encodeRegionReadRequest,
  encodeRegionWriteReply,
  encodeRegionWriteRequest,
} from '../../src/protocol/region-access.js';
import {
  decodeWriteMultiReply,
  decodeWriteMultiRequest,
  encodeWriteMultiReply,
  encodeWriteMultiRequest,
} from '../../src/protocol/write-multi.js';
import { assertBytes, assertProtocolError, assertTotal, hex, plain, shifted, u32, u64 } from './helpers/util.js';

describe('REGION_READ / REGION_WRITE', () => {
  it('sample client step 5: read config, 64 bytes', () => {
    const req = hex('0000000000000000 07000000 40000000');
    assertBytes(encodeRegionReadRequest({ offset: 0n, region: 7, count: 64 }), req);
    assert.deepEqual(decodeRegionReadRequest(shifted(req)), { offset: 0n, region: 7, count: 64 });
    const data = new Uint8Array(64);
    data.set(hex('addeefbe'), 0);
    const rep = encodeRegionReadReply({ offset: 0n, region: 7, count: 64, data });
    assert.equal(rep.length, 16 + 64);
    assertBytes(rep.subarray(0, 20), hex('0000000000000000 07000000 40000000 addeefbe'));
    assert.deepEqual(decodeRegionReadReply(rep), { offset: 0n, region: 7, count: 64, data });
  });

  it('write vector: request 16 + count, reply 16', () => {
    const req = hex('0800000000000000 00000000 04000000 78563412');
    const w = { offset: 8n, region: 0, count: 4, data: hex('78563412') };
    assertBytes(encodeRegionWriteRequest(w), req);
    assert.deepEqual(decodeRegionWriteRequest(shifted(req)), w);
    const rep = hex('0800000000000000 00000000 04000000');
    assertBytes(encodeRegionWriteReply({ offset: 8n, region: 0, count: 4 }), rep);
    assert.deepEqual(decodeRegionWriteReply(rep), { offset: 8n, region: 0, count: 4 });
  });

  it('errors', () => {
    // the sample client's probe: region 0xdeadbeef decodes (the server refuses the index)
    assert.equal(decodeRegionReadRequest(hex('0000000000000000 efbeadde 04000000')).region, 0xdeadbeef);
    assertProtocolError(() => decodeRegionReadRequest(new Uint8Array(15)), Errno.EINVAL);
    assertProtocolError(() => decodeRegionReadRequest(hex('0000000000000000 00000000 01001000')), Errno.E2BIG);
    assert.equal(decodeRegionReadRequest(hex('0000000000000000 00000000 01001000'), { maxCount: 2 << 20 }).count, 0x100001);
    assertProtocolError(() => decodeRegionWriteRequest(hex('0000000000000000 00000000 04000000 aabbcc')), Errno.EINVAL);
    assertProtocolError(() => decodeRegionWriteRequest(hex('0000000000000000 00000000 02000000 aabbcc')), Errno.EINVAL);
    assertProtocolError(() => decodeRegionReadReply(hex('0000000000000000 00000000 04000000 aabbcc')), Errno.EINVAL);
    assertProtocolError(() => decodeRegionWriteReply(hex('0000000000000000 00000000 04000000 aa')), Errno.EINVAL);
    assertProtocolError(() => encodeRegionWriteRequest({ offset: 0n, region: 0, count: 2, data: hex('aa') }), Errno.EINVAL);
    assertProtocolError(() => encodeRegionReadRequest({ offset: 1n << 64n, region: 0, count: 2 }), Errno.EINVAL);
    // count 0 read: LVU replies with no payload
    assert.equal(decodeRegionReadReply(new Uint8Array(0)).count, 0);
  });

  it('round-trips and is total', () => {
    fc.assert(
      fc.property(u64(), u32(), fc.uint8Array({ maxLength: 64 }), (offset, region, data) => {
        const a = { offset, region, count: data.length };
        assert.deepEqual(decodeRegionReadRequest(encodeRegionReadRequest(a)), a);
        assert.deepEqual(decodeRegionReadReply(encodeRegionReadReply({ ...a, data })), { ...a, data });
        assert.deepEqual(decodeRegionWriteRequest(encodeRegionWriteRequest({ ...a, data })), { ...a, data });
        assert.deepEqual(decodeRegionWriteReply(encodeRegionWriteReply(a)), a);
      }),
    );
    assertTotal(decodeRegionReadRequest);
    assertTotal(decodeRegionReadReply);
    assertTotal(decodeRegionWriteRequest);
    assertTotal(decodeRegionWriteReply);
  });
});

describe('REGION_WRITE_MULTI', () => {
  it('vector: 8 + 24·n', () => {
    const r = { entries: [{ offset: 0x10n, region: 0, count: 4, data: hex('01020304') }, { offset: 0x18n, region: 2, count: 8, data: hex('0102030405060708') }] };
    const p = encodeWriteMultiRequest(r);
    assert.equal(p.length, 8 + 48);
    assertBytes(
      p,
      hex(
        '0200000000000000' +
          '1000000000000000 00000000 04000000 0102030400000000' +
          '1800000000000000 02000000 08000000 0102030405060708',
      ),
    );
    assert.deepEqual(decodeWriteMultiRequest(shifted(p)), r);
    assertBytes(encodeWriteMultiReply({ wrCnt: 2n }), hex('0200000000000000'));
    assert.deepEqual(decodeWriteMultiReply(hex('0200000000000000')), { wrCnt: 2n });
  });

  it('errors', () => {
    assertProtocolError(() => decodeWriteMultiRequest(new Uint8Array(7)), Errno.EINVAL);
    assertProtocolError(() => decodeWriteMultiRequest(hex('0100000000000000')), Errno.EINVAL);
    assertProtocolError(() => decodeWriteMultiRequest(hex('ffffffffffffffff')), Errno.E2BIG);
    assertProtocolError(() => decodeWriteMultiRequest(hex('0100000000000000 0000000000000000 00000000 09000000 0000000000000000')), Errno.EINVAL);
    assertProtocolError(() => encodeWriteMultiRequest({ entries: [{ offset: 0n, region: 0, count: 9, data: new Uint8Array(9) }] }), Errno.EINVAL);
    assertProtocolError(() => decodeWriteMultiReply(new Uint8Array(9)), Errno.EINVAL);
  });

  it('round-trips and is total', () => {
    const entry = fc.uint8Array({ maxLength: 8 }).chain((data) => fc.record({ offset: u64(), region: u32(), count: fc.constant(data.length), data: fc.constant(data) }));
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 20 }), (entries) => {
        assert.deepEqual(decodeWriteMultiRequest(encodeWriteMultiRequest({ entries })), plain({ entries }));
      }),
    );
    fc.assert(fc.property(u64(), (wrCnt) => assert.deepEqual(decodeWriteMultiReply(encodeWriteMultiReply({ wrCnt })), { wrCnt })));
    assertTotal(decodeWriteMultiRequest);
    assertTotal(decodeWriteMultiReply);
  });
});
