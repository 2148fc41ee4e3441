import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MsixTable, type MsixEntry } from '../../src/pci/msix.js';
import { PciConfigSpace } from '../../src/pci/config-space.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { Errno } from '../../src/protocol/errno.js';

const le32 = (v: number): Uint8Array => new Uint8Array([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff]);
const u32 = (b: Uint8Array, off = 0): number => (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;

function setup(size = 4): { t: MsixTable; delivered: number[] } {
  const delivered: number[] = [];
  const t = new MsixTable({ size, deliver: (v) => delivered.push(v) });
  return { t, delivered };
}

const unmask = (t: MsixTable, v: number): void => t.writeTable(v * 16 + 12, le32(0));
const mask = (t: MsixTable, v: number): void => t.writeTable(v * 16 + 12, le32(1));

test('reset state: every vector masked, PBA clear, sizes', () => {
  const { t } = setup(65);
  assert.equal(t.tableBytes, 65 * 16);
  assert.equal(t.pbaBytes, 16);
  for (let v = 0; v < 65; v++) assert.equal(t.entry(v).masked, true);
  assert.equal(u32(t.readTable(12, 4)), 1);
  assert.deepEqual([...t.readPba(0, 8)], [0, 0, 0, 0, 0, 0, 0, 0]);
});

test('table entries: dword and qword writes, reserved control bits read 0', () => {
  const { t } = setup();
  t.writeTable(16, new Uint8Array([0x00, 0x10, 0xe0, 0xfe, 0x01, 0, 0, 0])); // qword address of vector 1
  t.writeTable(24, le32(0x4025));
  t.writeTable(28, le32(0xfffffffe));
  const e: MsixEntry = t.entry(1);
  assert.equal(e.address, 0x1_fee01000n);
  assert.equal(e.data, 0x4025);
  assert.equal(e.masked, false);
  assert.equal(u32(t.readTable(28, 4)), 0);
  assert.deepEqual([...t.readTable(16, 8)], [0x00, 0x10, 0xe0, 0xfe, 0x01, 0, 0, 0]);
});

test('table and PBA accesses must be aligned dwords/qwords within range', () => {
  const { t } = setup();
  const einval = (e: unknown): boolean => e instanceof ProtocolError && e.errno === Errno.EINVAL;
  assert.throws(() => t.readTable(2, 4), einval);
  assert.throws(() => t.readTable(4, 8), einval);
  assert.throws(() => t.readTable(0, 2), einval);
  assert.throws(() => t.readTable(64, 4), einval);
  assert.throws(() => t.writeTable(60, new Uint8Array(8)), einval);
  assert.throws(() => t.readPba(8, 4), einval);
  assert.equal(t.readPba(4, 4).length, 4);
});

test('fire: disabled when MSI-X is off, delivered when unmasked, pending when masked', () => {
  const { t, delivered } = setup();
  unmask(t, 0);
  assert.equal(t.fire(0), 'disabled');
  assert.equal(t.isPending(0), false, 'no pending bit while disabled');
  t.setControl({ enabled: true, functionMask: false });
  assert.equal(t.fire(0), 'delivered');
  assert.deepEqual(delivered, [0]);
  assert.equal(t.fire(2), 'pending', 'vector 2 is still masked');
  assert.equal(t.isPending(2), true);
  assert.equal(u32(t.readPba(0, 4)), 0b100);
  assert.deepEqual(delivered, [0]);
});

test('unmasking a vector with its pending bit set delivers it and clears the bit', () => {
  const { t, delivered } = setup();
  t.setControl({ enabled: true, functionMask: false });
  assert.equal(t.fire(3), 'pending');
  unmask(t, 3);
  assert.deepEqual(delivered, [3]);
  assert.equal(t.isPending(3), false);
  // Unmasking a vector with nothing pending delivers nothing.
  unmask(t, 1);
  assert.deepEqual(delivered, [3]);
});

test('function mask holds every vector pending; clearing it delivers the unmasked ones only', () => {
  const { t, delivered } = setup();
  unmask(t, 0);
  unmask(t, 1);
  t.setControl({ enabled: true, functionMask: true });
  assert.equal(t.fire(0), 'pending');
  assert.equal(t.fire(1), 'pending');
  assert.equal(t.fire(2), 'pending'); // also vector-masked
  unmask(t, 1); // function mask still set: stays pending
  assert.deepEqual(delivered, []);
  t.setControl({ enabled: true, functionMask: false });
  assert.deepEqual(delivered, [0, 1]);
  assert.equal(t.isPending(0), false);
  assert.equal(t.isPending(2), true);
  mask(t, 0);
  assert.equal(t.fire(0), 'pending');
  assert.equal(u32(t.readPba(0, 4)), 0b101);
});

test('driven by the config space: onMsixControlChange feeds setControl', () => {
  const delivered: number[] = [];
  const t = new MsixTable({ size: 8, deliver: (v) => delivered.push(v) });
  const cs = new PciConfigSpace(
    {
      vendorId: 1,
      deviceId: 2,
      classCode: 0,
      bars: [{ kind: 'mem32', size: 0x1000 }],
      capabilities: [{ type: 'msix', tableSize: 8, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x800 }],
    },
    { onMsixControlChange: (c) => t.setControl(c) },
  );
  const o = cs.findCapability(0x11)!;
  cs.write(o + 2, new Uint8Array([0x07, 0xc0])); // enable + function mask
  unmask(t, 5);
  assert.equal(t.fire(5), 'pending');
  cs.write(o + 3, new Uint8Array([0x80])); // clear function mask
  assert.deepEqual(delivered, [5]);
  assert.deepEqual(t.control(), { enabled: true, functionMask: false });
});

test('reset() masks everything again and drops pending bits', () => {
  const { t } = setup();
  t.setControl({ enabled: true, functionMask: true });
  t.fire(1);
  t.reset();
  assert.equal(t.isPending(1), false);
  assert.equal(t.entry(1).masked, true);
  assert.equal(t.fire(1), 'disabled');
  assert.throws(() => t.fire(4), RangeError);
  assert.throws(() => new MsixTable({ size: 0 }), RangeError);
  assert.throws(() => new MsixTable({ size: 2049 }), RangeError);
});
