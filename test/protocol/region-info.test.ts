import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import { RegionCapId, RegionInfoFlags } from '../../src/protocol/constants.js';
import {
  buildRegionInfoReply,
  capsSize,
  decodeRegionInfoReply,
  decodeRegionInfoRequest,
  encodeRegionInfoReply,
  encodeRegionInfoRequest,
  type RegionCap,
  type RegionInfo,
} from '../../src/protocol/region-info.js';
import { assertBytes, assertProtocolError, assertTotal, hex, shifted, u16, u32, u64 } from './helpers/util.js';
import { plain } from './helpers/util.js';

describe('DEVICE_GET_REGION_INFO', () => {
  it('request vector (32 bytes)', () => {
    const req = hex('20000000 00000000 07000000 00000000 0000000000000000 0000000000000000');
    assertBytes(encodeRegionInfoRequest({ index: 7 }), req);
    assert.deepEqual(decodeRegionInfoRequest(shifted(req)), { argsz: 32, index: 7 });
  });

  it('config-space reply: 32 bytes, R|W, size 256', () => {
    const rep = hex('20000000 03000000 07000000 00000000 0001000000000000 0000000000000000');
    const { payload, attachFd } = buildRegionInfoReply({ index: 7, flags: 3, size: 256n }, 32);
    assertBytes(payload, rep);
    assert.equal(attachFd, false);
    assert.deepEqual(decodeRegionInfoReply(rep), { argsz: 32, flags: 3, index: 7, capOffset: 0, size: 256n, offset: 0n, caps: [] });
  });

  // Sample client step 4: BAR1, 2 sparse areas, argsz 80.
  const sparse: RegionCap = { id: RegionCapId.SPARSE_MMAP, version: 1, areas: [{ offset: 0n, size: 0x1000n }, { offset: 0x2000n, size: 0x1000n }] };
  const bar1 = { index: 1, flags: RegionInfoFlags.READ | RegionInfoFlags.WRITE, size: 0x4000n, offset: 0x10000n, hasFd: true, caps: [sparse] };
  const full = hex(
    '50000000 0f000000 01000000 20000000 0040000000000000 0000010000000000' + // argsz 80, R|W|MMAP|CAPS, idx 1, cap@32, size, offset
      '0100 0100 00000000 02000000 00000000' + // cap id 1 v1 next 0, nr_areas 2, reserved
      '0000000000000000 0010000000000000 0020000000000000 0010000000000000',
  );

  it('mappable region: truncated at argsz 32, full at argsz 80 with one fd', () => {
    const small = buildRegionInfoReply(bar1, 32);
    assertBytes(small.payload, hex('50000000 07000000 01000000 00000000 0040000000000000 0000010000000000'));
    assert.equal(small.attachFd, false);
    const d = decodeRegionInfoReply(small.payload);
    assert.equal(d.argsz, 80);
    assert.deepEqual(d.caps, []);

    const big = buildRegionInfoReply(bar1, 80);
    assert.equal(big.payload.length, 80);
    assertBytes(big.payload, full);
    assert.equal(big.attachFd, true);
    assert.deepEqual(decodeRegionInfoReply(shifted(full)).caps, [sparse]);
  });

  it('size-0 region has no caps; TYPE cap chain', () => {
    const z = buildRegionInfoReply({ ...bar1, size: 0n }, 1000);
    assert.equal(z.payload.length, 32);
    const typeCap: RegionCap = { id: RegionCapId.TYPE, version: 1, type: 3, subtype: 1 };
    const p = encodeRegionInfoReply({ argsz: 96, flags: 3, index: 9, capOffset: 0, size: 4096n, offset: 0n, caps: [typeCap, sparse] });
    assert.equal(p.length, 32 + 16 + 48);
    // first cap header: id 2, v1, next = 48
    assertBytes(p.subarray(32, 48), hex('0200 0100 30000000 03000000 01000000'));
    assert.deepEqual(decodeRegionInfoReply(p).caps, [typeCap, sparse]);
  });

  it('errors', () => {
    assertProtocolError(() => decodeRegionInfoRequest(new Uint8Array(31)), Errno.EINVAL);
    assertProtocolError(() => decodeRegionInfoRequest(hex('1f000000 00000000 00000000' + '00'.repeat(20))), Errno.EINVAL);
    assertProtocolError(() => decodeRegionInfoRequest(hex('20000000 00000000 09000000' + '00'.repeat(20))), Errno.EINVAL);
    assertProtocolError(() => decodeRegionInfoRequest(hex('20000000 00000000 efbeadde' + '00'.repeat(20))), Errno.EINVAL);
    assert.equal(decodeRegionInfoRequest(hex('20000000 00000000 09000000' + '00'.repeat(20)), 10).index, 9);
    // cap offset inside the struct
    const b = full.slice();
    b[12] = 8;
    assertProtocolError(() => decodeRegionInfoReply(b), Errno.EINVAL);
    // loop: cap points at itself
    const loop = full.slice();
    loop[36] = 32;
    assertProtocolError(() => decodeRegionInfoReply(loop), Errno.EINVAL);
    // too many areas
    const many = full.slice();
    many[40] = 3;
    assertProtocolError(() => decodeRegionInfoReply(many), Errno.EINVAL);
    assertProtocolError(() => decodeRegionInfoReply(full.subarray(0, 40)), Errno.EINVAL);
  });

  const capArb: fc.Arbitrary<RegionCap> = fc.oneof(
    fc.record({ id: fc.constant(RegionCapId.SPARSE_MMAP), version: u16(), areas: fc.array(fc.record({ offset: u64(), size: u64() }), { maxLength: 4 }) }),
    fc.record({ id: fc.constant(RegionCapId.TYPE), version: u16(), type: u32(), subtype: u32() }),
    fc.record({ id: fc.integer({ min: 3, max: 0xffff }), version: u16(), data: fc.uint8Array({ maxLength: 24 }) }),
  ) as fc.Arbitrary<RegionCap>;

  it('round-trips', () => {
    fc.assert(
      fc.property(u32(), fc.integer({ min: 0, max: 7 }), u32(), u64(), u64(), fc.array(capArb, { maxLength: 4 }), (argsz, flags, index, size, offset, caps) => {
        const info: RegionInfo = { argsz, flags, index, capOffset: 0, size, offset, caps };
        const p = encodeRegionInfoReply(info);
        assert.equal(p.length, 32 + capsSize(caps));
        const d = decodeRegionInfoReply(p);
        const expected = caps.length ? { ...info, flags: flags | 8, capOffset: 32 } : info;
        assert.deepEqual(plain(d), plain(expected));
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 32, max: 0xffffffff }), u32(), (argsz, index) => {
        assert.deepEqual(decodeRegionInfoRequest(encodeRegionInfoRequest({ argsz, index }), 0x100000000), { argsz, index });
      }),
    );
  });

  it('total on random bytes', () => {
    assertTotal(decodeRegionInfoRequest);
    assertTotal(decodeRegionInfoReply);
    // random bytes behind a valid header with CAPS set
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 260 }), (tail, capOff) => {
        const p = new Uint8Array(32 + tail.length);
        p.set(tail, 32);
        p[4] = 8;
        p[12] = capOff & 0xff;
        p[13] = capOff >> 8;
        try {
          decodeRegionInfoReply(p);
        } catch (e) {
          assert.equal((e as { errno?: number }).errno, Errno.EINVAL);
        }
      }),
      { numRuns: 500 },
    );
  });
});

