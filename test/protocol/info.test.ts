import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import { decodeDeviceInfoReply, decodeDeviceInfoRequest, encodeDeviceInfoReply, encodeDeviceInfoRequest } from '../../src/protocol/device-info.js';
import { decodeIrqInfoReply, decodeIrqInfoRequest, encodeIrqInfoReply, encodeIrqInfoRequest } from '../../src/protocol/irq-info.js';
import { assertBytes, assertProtocolError, assertTotal, hex, shifted, u32 } from './helpers/util.js';

describe('DEVICE_GET_INFO', () => {
  it('vectors (16 bytes each)', () => {
    const req = hex('10000000 00000000 00000000 00000000');
    assertBytes(encodeDeviceInfoRequest(), req);
    assert.deepEqual(decodeDeviceInfoRequest(shifted(req)), { argsz: 16 });
    // libvfio-user's reply: flags RESET|PCI, 9 regions, 5 irqs
    const rep = hex('10000000 03000000 09000000 05000000');
    const info = { argsz: 16, flags: 3, numRegions: 9, numIrqs: 5 };
    assertBytes(encodeDeviceInfoReply(info), rep);
    assert.deepEqual(decodeDeviceInfoReply(shifted(rep)), info);
  });

  it('errors', () => {
    assertProtocolError(() => decodeDeviceInfoRequest(hex('10000000 00000000 00000000 000000')), Errno.EINVAL);
    assertProtocolError(() => decodeDeviceInfoRequest(hex('0f000000 00000000 00000000 00000000')), Errno.EINVAL);
    assertProtocolError(() => decodeDeviceInfoReply(new Uint8Array(15)), Errno.EINVAL);
    assertProtocolError(() => encodeDeviceInfoReply({ argsz: 16, flags: -1, numRegions: 9, numIrqs: 5 }), Errno.EINVAL);
  });

  it('round-trips and is total', () => {
    fc.assert(
      fc.property(u32(), u32(), u32(), u32(), (argsz, flags, numRegions, numIrqs) => {
        const r = { argsz, flags, numRegions, numIrqs };
        assert.deepEqual(decodeDeviceInfoReply(encodeDeviceInfoReply(r)), r);
        if (argsz >= 16) assert.deepEqual(decodeDeviceInfoRequest(encodeDeviceInfoRequest({ argsz })), { argsz });
      }),
    );
    assertTotal(decodeDeviceInfoRequest);
    assertTotal(decodeDeviceInfoReply);
  });
});

describe('DEVICE_GET_IRQ_INFO', () => {
  it('vectors (16 bytes each)', () => {
    const req = hex('10000000 00000000 02000000 00000000');
    assertBytes(encodeIrqInfoRequest({ index: 2 }), req);
    assert.deepEqual(decodeIrqInfoRequest(shifted(req)), { argsz: 16, index: 2 });
    // MSI-X: EVENTFD|NORESIZE, 2048 vectors
    const rep = hex('10000000 09000000 02000000 00080000');
    const info = { argsz: 16, flags: 9, index: 2, count: 2048 };
    assertBytes(encodeIrqInfoReply(info), rep);
    assert.deepEqual(decodeIrqInfoReply(rep), info);
  });

  it('errors: short, argsz < 16, index ≥ 5', () => {
    assertProtocolError(() => decodeIrqInfoRequest(new Uint8Array(12)), Errno.EINVAL);
    assertProtocolError(() => decodeIrqInfoRequest(hex('08000000 00000000 00000000 00000000')), Errno.EINVAL);
    assertProtocolError(() => decodeIrqInfoRequest(hex('10000000 00000000 05000000 00000000')), Errno.EINVAL);
    assert.equal(decodeIrqInfoRequest(hex('10000000 00000000 05000000 00000000'), 6).index, 5);
    assertProtocolError(() => decodeIrqInfoReply(new Uint8Array(0)), Errno.EINVAL);
  });

  it('round-trips and is total', () => {
    fc.assert(
      fc.property(u32(), u32(), u32(), u32(), (argsz, flags, index, count) => {
        const r = { argsz, flags, index, count };
        assert.deepEqual(decodeIrqInfoReply(encodeIrqInfoReply(r)), r);
        if (argsz >= 16) assert.deepEqual(decodeIrqInfoRequest(encodeIrqInfoRequest({ argsz, index }), 0x100000000), { argsz, index });
      }),
    );
    assertTotal(decodeIrqInfoRequest);
    assertTotal(decodeIrqInfoReply);
  });
});
