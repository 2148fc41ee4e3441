// Config space and capabilities as a client sees them through the server:
// BAR sizing over REGION_WRITE, read-only registers, MSI-X table/PBA served
// by the library with masking and pending bits, FLR reaching the reset
// callback, Bus Master gating of MSI-X.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { SetIrqsFlags } from '../../src/protocol/constants.js';
import { encodeSetIrqsRequest } from '../../src/protocol/set-irqs.js';
import { decodeRegionReadReply, encodeRegionReadRequest, encodeRegionWriteRequest } from '../../src/protocol/region-access.js';
import { decodeConfigSpace } from '../../src/pci/decode.js';
import type { DeviceDescription, ResetReason } from '../../src/server/device.js';
import { startRig, type Rig } from '../helpers/raw-client.js';

const le32 = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
};
const le16 = (v: number): Uint8Array => new Uint8Array([v & 0xff, v >> 8]);

async function read(rig: Rig, region: number, offset: number, count: number): Promise<Uint8Array> {
  return decodeRegionReadReply((await rig.call(Command.REGION_READ, encodeRegionReadRequest({ offset: BigInt(offset), region, count }))).payload).data;
}
async function write(rig: Rig, region: number, offset: number, data: Uint8Array): Promise<void> {
  await rig.call(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: BigInt(offset), region, count: data.length, data }));
}
const u32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset).getUint32(0, true);
const u16 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset).getUint16(0, true);

function device(resets: ResetReason[]): DeviceDescription {
  return {
    vendorId: 0x1b36,
    deviceId: 0x0011,
    classCode: { base: 0x05, sub: 0x80, progIf: 0 },
    express: true,
    irqs: { intx: 1 },
    capabilities: [
      { type: 'pm' },
      { type: 'msix', tableSize: 4, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x800 },
      { type: 'pcie', flr: true },
      { type: 'vendor', data: new Uint8Array([1, 2, 3, 4, 5]) },
    ],
    extendedCapabilities: [{ type: 'dsn', serial: 0x0123456789abcdefn }],
    regions: {
      0: { size: 0x1000, kind: 'mem64', read: (_o, n) => new Uint8Array(n).fill(0xee), write: () => {} },
      2: { size: 0x100, kind: 'io', read: (_o, n) => new Uint8Array(n), write: () => {} },
      4: { size: 0x10000, kind: 'mem32', prefetchable: true, read: (_o, n) => new Uint8Array(n), write: () => {} },
    },
    reset: (r) => void resets.push(r),
  };
}

test('config space as decoded by a client matches the description; BAR sizing via REGION_WRITE', async () => {
  const rig = await startRig('memory', device([]));
  try {
    const cfg = await read(rig, 7, 0, 4096);
    const d = decodeConfigSpace(cfg);
    assert.equal(d.vendorId, 0x1b36);
    assert.equal(d.deviceId, 0x0011);
    assert.deepEqual(
      d.capabilities.map((c) => c.id),
      [0x01, 0x11, 0x10, 0x09],
    );
    assert.deepEqual(d.extendedCapabilities.map((c) => c.id), [0x3]);
    // Sizing: all-ones then read back the mask, for every BAR kind.
    const size = async (bar: number) => {
      await write(rig, 7, 0x10 + bar * 4, le32(0xffffffff));
      return u32(await read(rig, 7, 0x10 + bar * 4, 4));
    };
    assert.equal(await size(0), 0xfffff004, 'mem64 low dword: 4 KiB mask + 64-bit type');
    assert.equal(await size(1), 0xffffffff, 'mem64 < 4 GiB: the high dword is all writable');
    assert.equal(await size(2), 0xffffff01, 'I/O BAR of 256 bytes');
    assert.equal(await size(3), 0, 'empty BAR');
    assert.equal(await size(4), 0xffff0008, 'prefetchable mem32 of 64 KiB');
    // Read-only registers ignore writes instead of failing them.
    await write(rig, 7, 0, le32(0x12345678));
    assert.equal(u32(await read(rig, 7, 0, 4)), 0x00111b36);
  } finally {
    await rig.close();
  }
});

test('MSI-X: table and PBA served by the library, vector and function masks, pending bits, Bus Master gating', async () => {
  const rig = await startRig('memory', device([]));
  const efds = [0, 1, 2, 3].map(() => native.eventfd(0, native.EFD_NONBLOCK));
  try {
    const cap = rig.ctx.config.findCapability(0x11)!;
    await rig.call(
      Command.DEVICE_SET_IRQS,
      encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index: 2, start: 0, count: 4 }),
      efds,
    );
    // MSI-X enable in the capability's message control; Bus Master on.
    await write(rig, 7, cap + 2, le16(0x8000));
    await write(rig, 7, 4, le16(0x0006));
    // Program vector 0's entry; it stays masked (power-on state).
    await write(rig, 0, 0, le32(0xfee00000));
    await write(rig, 0, 8, le32(0x41));
    assert.equal(rig.ctx.irq.trigger('msix', 0), 'masked');
    assert.equal(native.eventfdRead(efds[0]!), -1n);
    assert.equal((await read(rig, 0, 0x800, 8))[0], 0x01, 'PBA bit 0 set while masked');
    // Unmask vector 0 in the table: the pending message goes out, PBA clears.
    await write(rig, 0, 12, le32(0));
    assert.equal(native.eventfdRead(efds[0]!), 1n);
    assert.equal((await read(rig, 0, 0x800, 8))[0], 0);
    assert.equal(rig.ctx.irq.trigger('msix', 0), 'delivered');
    assert.equal(native.eventfdRead(efds[0]!), 1n);
    // Function mask holds every vector.
    await write(rig, 7, cap + 2, le16(0xc000));
    assert.equal(rig.ctx.irq.trigger('msix', 0), 'masked');
    await write(rig, 7, cap + 2, le16(0x8000));
    assert.equal(native.eventfdRead(efds[0]!), 1n, 'delivered when the function mask clears');
    // Bus Master off: MSI-X refused.
    await write(rig, 7, 4, le16(0x0002));
    assert.equal(rig.ctx.irq.trigger('msix', 0), 'bus-master-off');
    // Non-table parts of BAR0 still reach the device callback.
    assert.deepEqual(Array.from(await read(rig, 0, 0xc00, 2)), [0xee, 0xee]);
  } finally {
    for (const fd of efds) native.close(fd);
    await rig.close();
  }
});

test('PCIe Function Level Reset reaches the reset callback as its own reason', async () => {
  const resets: ResetReason[] = [];
  const rig = await startRig('socket', device(resets));
  try {
    const pcie = rig.ctx.config.findCapability(0x10)!;
    await write(rig, 7, 4, le16(0x0006));
    await write(rig, 7, pcie + 8, le16(0x8000)); // DevCtl: Initiate FLR
    await rig.call(Command.DEVICE_GET_INFO, new Uint8Array([16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert.deepEqual(resets, ['flr']);
    assert.equal(u16(await read(rig, 7, 4, 2)) & 0x6, 0, 'command register back to power-on');
    assert.equal(u16(await read(rig, 7, pcie + 8, 2)) & 0x8000, 0, 'FLR bit self-clears');
  } finally {
    await rig.close();
  }
});

test('INTx-Disable holds INTx; clearing it delivers the asserted line', async () => {
  const rig = await startRig('memory', device([]));
  const efd = native.eventfd(0, native.EFD_NONBLOCK);
  try {
    await rig.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index: 0, start: 0, count: 1 }), [efd]);
    await write(rig, 7, 4, le16(0x0400));
    assert.equal(rig.ctx.irq.assertIntx(), 'intx-disabled');
    assert.equal((await read(rig, 7, 6, 1))[0]! & 0x08, 0x08, 'Status.Interrupt follows the line');
    await write(rig, 7, 4, le16(0x0000));
    assert.equal(native.eventfdRead(efd), 1n);
  } finally {
    native.close(efd);
    await rig.close();
  }
});

test('a device may take over every config-space access with callbacks', async () => {
  const seen: string[] = [];
  const rig = await startRig('memory', {
    vendorId: 0x1111,
    deviceId: 0x2222,
    config: {
      read: (off, n) => {
        seen.push(`r${off}:${n}`);
        return new Uint8Array(n).fill(0xab);
      },
      write: (off, d) => void seen.push(`w${off}:${d.length}`),
    },
  });
  try {
    assert.deepEqual(Array.from(await read(rig, 7, 0, 4)), [0xab, 0xab, 0xab, 0xab]);
    await write(rig, 7, 4, le16(0x0006));
    assert.deepEqual(seen, ['r0:4', 'w4:2']);
    assert.equal(rig.ctx.config.busMasterEnabled, false, 'the built-in model saw nothing');
  } finally {
    await rig.close();
  }
});
