import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import {
  buildRegionIoFdsReply,
  decodeRegionIoFdsReply,
  decodeRegionIoFdsRequest,
  encodeRegionIoFdsReply,
  encodeRegionIoFdsRequest,
  type IoFdEntry,
} from '../../src/protocol/region-io-fds.js';
import { assertBytes, assertProtocolError, assertTotal, hex, plain, shifted, u32, u64 } from './helpers/util.js';

describe('DEVICE_GET_REGION_IO_FDS', () => {
  const entry: IoFdEntry = { offset: 0x10n, size: 4n, fdIndex: 0, type: 0, flags: 1, datamatch: 0xabn };

  it('request vector (16 bytes)', () => {
    const req = hex('00010000 00000000 02000000 00000000');
    assertBytes(encodeRegionIoFdsRequest({ argsz: 256, index: 2 }), req);
    assert.deepEqual(decodeRegionIoFdsRequest(shifted(req)), { argsz: 256, index: 2 });
  });

  it('SPEC layout reply: 16 + 40 bytes', () => {
    const { payload, attachFds } = buildRegionIoFdsReply(2, [entry], 256);
    assert.equal(attachFds, true);
    assertBytes(
      payload,
      hex(
        '38000000 00000000 02000000 01000000' +
          '1000000000000000 0400000000000000 00000000 00000000 01000000 00000000 ab00000000000000',
      ),
    );
    assert.deepEqual(decodeRegionIoFdsReply(payload).entries, [entry]);
  });

  it('LVU layout reply: 16 + 48 bytes', () => {
    const e: IoFdEntry = { ...entry, type: 2, shadowMemFdIndex: 1, shadowOffset: 0x1000n };
    const { payload } = buildRegionIoFdsReply(2, [e], 256, { layout: 'lvu' });
    assertBytes(
      payload,
      hex(
        '40000000 00000000 02000000 01000000' +
          '1000000000000000 0400000000000000 00000000 02000000 01000000 01000000 0010000000000000 ab00000000000000',
      ),
    );
    assert.deepEqual(decodeRegionIoFdsReply(payload, { layout: 'lvu' }).entries, [e]);
  });

  it('argsz too small → header only, no fds', () => {
    const { payload, attachFds } = buildRegionIoFdsReply(2, [entry, entry], 16);
    assertBytes(payload, hex('60000000 00000000 02000000 02000000'));
    assert.equal(attachFds, false);
    assert.deepEqual(decodeRegionIoFdsReply(payload), { argsz: 96, flags: 0, index: 2, count: 2, entries: [] });
  });

  it('errors', () => {
    assertProtocolError(() => decodeRegionIoFdsRequest(new Uint8Array(15)), Errno.EINVAL);
    assertProtocolError(() => decodeRegionIoFdsRequest(hex('00010000 01000000 02000000 00000000')), Errno.EINVAL);
    assertProtocolError(() => decodeRegionIoFdsRequest(hex('00010000 00000000 02000000 01000000')), Errno.EINVAL);
    assertProtocolError(() => decodeRegionIoFdsRequest(hex('0f000000 00000000 02000000 00000000')), Errno.EINVAL);
    assertProtocolError(() => decodeRegionIoFdsRequest(hex('01001000 00000000 02000000 00000000')), Errno.EINVAL);
    const { payload } = buildRegionIoFdsReply(2, [entry], 256);
    assertProtocolError(() => decodeRegionIoFdsReply(payload.subarray(0, 50)), Errno.EINVAL);
    assertProtocolError(() => decodeRegionIoFdsReply(payload, { layout: 'lvu' }), Errno.EINVAL);
  });

  it('round-trips (both layouts) and is total', () => {
    const spec = fc.record({ offset: u64(), size: u64(), fdIndex: u32(), type: u32(), flags: u32(), datamatch: u64() });
    const lvu = fc.record({ offset: u64(), size: u64(), fdIndex: u32(), type: u32(), flags: u32(), datamatch: u64(), shadowMemFdIndex: u32(), shadowOffset: u64() });
    fc.assert(
      fc.property(u32(), fc.array(spec, { maxLength: 5 }), (index, entries) => {
        const r = plain({ argsz: 16 + 40 * entries.length, flags: 0, index, count: entries.length, entries });
        assert.deepEqual(decodeRegionIoFdsReply(encodeRegionIoFdsReply(r)), r);
      }),
    );
    fc.assert(
      fc.property(u32(), fc.array(lvu, { maxLength: 5 }), (index, entries) => {
        const r = plain({ argsz: 16 + 48 * entries.length, flags: 0, index, count: entries.length, entries });
        assert.deepEqual(decodeRegionIoFdsReply(encodeRegionIoFdsReply(r, { layout: 'lvu' }), { layout: 'lvu' }), r);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 16, max: 1 << 20 }), u32(), (argsz, index) => {
        assert.deepEqual(decodeRegionIoFdsRequest(encodeRegionIoFdsRequest({ argsz, index })), { argsz, index });
      }),
    );
    assertTotal(decodeRegionIoFdsRequest);
    assertTotal(decodeRegionIoFdsReply);
    assertTotal((p) => decodeRegionIoFdsReply(p, { layout: 'lvu' }));
  });
});
