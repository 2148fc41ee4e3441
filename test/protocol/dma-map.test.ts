import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import {
  decodeDmaMapReply,
  decodeDmaMapRequest,
  decodeDmaUnmapReply,
  decodeDmaUnmapRequest,
  encodeDmaMapReply,
  encodeDmaMapRequest,
  encodeDmaUnmapReply,
  encodeDmaUnmapRequest,
} from '../../src/protocol/dma-map.js';
import { assertBytes, assertProtocolError, assertTotal, hex, shifted, u32, u64 } from './helpers/util.js';

describe('DMA_MAP', () => {
  // argsz 32, flags R|W, offset 0x1000, address 0xfffc0000, size 0x40000
  const vec = hex('20000000 03000000 0010000000000000 0000fcff00000000 0000040000000000');

  it('request vector (32 bytes)', () => {
    const r = { argsz: 32, flags: 3, offset: 0x1000n, address: 0xfffc0000n, size: 0x40000n };
    const p = encodeDmaMapRequest(r);
    assert.equal(p.length, 32);
    assertBytes(p, vec);
    assert.deepEqual(decodeDmaMapRequest(shifted(vec)), r);
    assertBytes(encodeDmaMapRequest({ flags: 1, offset: 0n, address: 0n, size: 0n }), hex('20000000 01000000' + '00'.repeat(24)));
  });

  it('reply is empty', () => {
    assert.equal(encodeDmaMapReply().length, 0);
    decodeDmaMapReply(new Uint8Array(0));
    assertProtocolError(() => decodeDmaMapReply(hex('00')), Errno.EINVAL);
  });

  it('errors', () => {
    assertProtocolError(() => decodeDmaMapRequest(vec.subarray(0, 31)), Errno.EINVAL);
    const small = vec.slice();
    small[0] = 31;
    assertProtocolError(() => decodeDmaMapRequest(small), Errno.EINVAL);
    const badFlags = vec.slice();
    badFlags[4] = 0x10;
    assertProtocolError(() => decodeDmaMapRequest(badFlags), Errno.EINVAL);
    const both = vec.slice();
    both[4] = 0x0f; // MMAP | FILE_IO
    assertProtocolError(() => decodeDmaMapRequest(both), Errno.EINVAL);
    const mmap = vec.slice();
    mmap[4] = 0x07;
    assert.equal(decodeDmaMapRequest(mmap).flags, 7);
    assertProtocolError(() => encodeDmaMapRequest({ flags: 0, offset: -1n, address: 0n, size: 0n }), Errno.EINVAL);
    assertProtocolError(() => encodeDmaMapRequest({ flags: 0, offset: 0n, address: 1n << 64n, size: 0n }), Errno.EINVAL);
    assertProtocolError(() => encodeDmaMapRequest({ flags: 2 ** 32, offset: 0n, address: 0n, size: 0n }), Errno.EINVAL);
  });

  it('round-trips', () => {
    fc.assert(
      fc.property(fc.integer({ min: 32, max: 0xffffffff }), fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), u64(), u64(), u64(), (argsz, flags, offset, address, size) => {
        const r = { argsz, flags, offset, address, size };
        assert.deepEqual(decodeDmaMapRequest(encodeDmaMapRequest(r)), r);
      }),
    );
  });

  it('total on random bytes', () => {
    assertTotal(decodeDmaMapRequest);
    assertTotal(decodeDmaMapReply);
  });
});

describe('DMA_UNMAP', () => {
  // argsz 24, flags 0, address 0x4000, size 0x1000
  const vec = hex('18000000 00000000 0040000000000000 0010000000000000');

  it('request and reply vectors (24 bytes)', () => {
    const r = { argsz: 24, flags: 0, address: 0x4000n, size: 0x1000n };
    assertBytes(encodeDmaUnmapRequest(r), vec);
    assertBytes(encodeDmaUnmapRequest({ flags: 0, address: 0x4000n, size: 0x1000n }), vec);
    assert.deepEqual(decodeDmaUnmapRequest(shifted(vec)), r);
    assertBytes(encodeDmaUnmapReply(r), vec);
    assert.deepEqual(decodeDmaUnmapReply(vec), r);
  });

  it('ALL (QEMU / sample client step 24)', () => {
    const all = hex('18000000 02000000' + '00'.repeat(16));
    assert.deepEqual(decodeDmaUnmapRequest(all), { argsz: 24, flags: 2, address: 0n, size: 0n });
    const bad = all.slice();
    bad[8] = 1;
    assertProtocolError(() => decodeDmaUnmapRequest(bad), Errno.EINVAL);
  });

  it('legacy GET_DIRTY_BITMAP', () => {
    // argsz 48, flags 1, addr 0, size 0x10000, pgsize 4096, bitmap size 8
    const req = hex('30000000 01000000 0000000000000000 0000010000000000 0010000000000000 0800000000000000');
    const r = { argsz: 48, flags: 1, address: 0n, size: 0x10000n, bitmap: { pgsize: 4096n, size: 8n } };
    assert.deepEqual(decodeDmaUnmapRequest(req), r);
    assertBytes(encodeDmaUnmapRequest(r), req);
    const rep = new Uint8Array([...req, 0x05, 0, 0, 0, 0, 0, 0, 0x80]);
    const d = decodeDmaUnmapReply(rep);
    assert.deepEqual(d.bitmap?.data, hex('0500000000000080'));
    assertBytes(encodeDmaUnmapReply(d), rep);
    assertProtocolError(() => decodeDmaUnmapReply(rep.subarray(0, 47)), Errno.EINVAL);
    assertProtocolError(() => decodeDmaUnmapRequest(req.subarray(0, 39)), Errno.EINVAL);
    const smallArgsz = req.slice();
    smallArgsz[0] = 47;
    assertProtocolError(() => decodeDmaUnmapRequest(smallArgsz), Errno.EINVAL);
  });

  it('errors', () => {
    assertProtocolError(() => decodeDmaUnmapRequest(vec.subarray(0, 23)), Errno.EINVAL);
    for (const f of [3, 4, 0x80]) {
      const b = vec.slice();
      b[4] = f;
      assertProtocolError(() => decodeDmaUnmapRequest(b), Errno.EINVAL);
    }
    const small = vec.slice();
    small[0] = 16;
    assertProtocolError(() => decodeDmaUnmapRequest(small), Errno.EINVAL);
    const huge = vec.slice();
    huge.set(hex('01001000'), 0); // 1 MiB + 1
    assertProtocolError(() => decodeDmaUnmapRequest(huge), Errno.EINVAL);
    assertProtocolError(() => decodeDmaUnmapReply(new Uint8Array(25)), Errno.EINVAL);
    assertProtocolError(() => encodeDmaUnmapRequest({ flags: 1, address: 0n, size: 0n }), Errno.EINVAL);
  });

  it('round-trips', () => {
    fc.assert(
      fc.property(fc.integer({ min: 24, max: 1 << 20 }), fc.constantFrom(0, 2), u64(), u64(), (argsz, flags, address, size) => {
        if (flags === 2) address = size = 0n;
        const r = { argsz, flags, address, size };
        assert.deepEqual(decodeDmaUnmapRequest(encodeDmaUnmapRequest(r)), r);
      }),
    );
    fc.assert(
      fc.property(u32(), fc.constantFrom(0, 1, 2), u64(), u64(), u64(), fc.uint8Array({ maxLength: 40 }), (argsz, flags, address, size, pgsize, data) => {
        const r = flags & 1 ? { argsz, flags, address, size, bitmap: { pgsize, size: BigInt(data.length), data } } : { argsz, flags, address, size };
        assert.deepEqual(decodeDmaUnmapReply(encodeDmaUnmapReply(r)), r);
      }),
    );
  });

  it('total on random bytes', () => {
    assertTotal(decodeDmaUnmapRequest);
    assertTotal(decodeDmaUnmapReply);
  });
});
