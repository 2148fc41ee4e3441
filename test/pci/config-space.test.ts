import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PciConfigSpace } from '../../src/pci/config-space.js';
import { decodeConfigSpace, type DecodedMsi, type DecodedMsix, type DecodedPcie, type DecodedPm } from '../../src/pci/decode.js';
import type { MsiState, MsixControl, PciDeviceDescription } from '../../src/pci/types.js';
import { ProtocolError, VfioUserError } from '../../src/protocol/errors.js';
import { Errno } from '../../src/protocol/errno.js';

const le16 = (v: number): Uint8Array => new Uint8Array([v & 0xff, (v >>> 8) & 0xff]);
const le32 = (v: number): Uint8Array => new Uint8Array([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff]);
const r16 = (cs: PciConfigSpace, off: number): number => {
  const b = cs.read(off, 2);
  return b[0]! | (b[1]! << 8);
};
const r32 = (cs: PciConfigSpace, off: number): number => {
  const b = cs.read(off, 4);
  return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
};
const w16 = (cs: PciConfigSpace, off: number, v: number): void => cs.write(off, le16(v));
const w32 = (cs: PciConfigSpace, off: number, v: number): void => cs.write(off, le32(v));

const full: PciDeviceDescription = {
  vendorId: 0x1234,
  deviceId: 0x11e8,
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
  classCode: { base: 0x01, sub: 0x08, progIf: 0x02 },
  revision: 0x10,
  express: true,
  intxPin: true,
  bars: [
    { kind: 'mem64', size: 1n << 33n, prefetchable: true },
    undefined,
    { kind: 'io', size: 8 },
    { kind: 'mem32', size: 0x4000 },
    { kind: 'mem64', size: 0x1000 },
  ],
  rom: { size: 0x10000 },
  capabilities: [
    { type: 'pm', d1: true, pmeSupport: 0x19 },
    { type: 'msi', vectors: 4, perVectorMasking: true },
    { type: 'msix', tableSize: 16, tableBar: 3, tableOffset: 0x0, pbaBar: 3, pbaOffset: 0x2000 },
    { type: 'pcie', flr: true, maxPayloadSupported: 1 },
    { type: 'vendor', data: new Uint8Array([1, 2, 3, 4, 5]) },
  ],
  extendedCapabilities: [
    { type: 'dsn', serial: 0x0102030405060708n },
    { type: 'vendor', vsecId: 0xabcd, vsecRev: 2, data: new Uint8Array([9, 8, 7, 6]) },
  ],
};

test('decoding the built space gives back the description', () => {
  const cs = new PciConfigSpace(full);
  assert.equal(cs.size, 4096);
  assert.equal(cs.bytes.length, 4096);
  const d = decodeConfigSpace(cs.bytes, { barSizes: full.bars!.map((b) => b?.size), romSize: full.rom!.size });
  assert.deepEqual(d.warnings, []);
  assert.equal(d.vendorId, 0x1234);
  assert.equal(d.deviceId, 0x11e8);
  assert.equal(d.subsystemVendorId, 0x1af4);
  assert.equal(d.subsystemId, 0x1100);
  assert.deepEqual(d.classCode, { base: 1, sub: 8, progIf: 2, value: 0x010802 });
  assert.equal(d.revision, 0x10);
  assert.equal(d.headerType, 0);
  assert.equal(d.interruptPin, 1);
  assert.equal(d.status & 0x10, 0x10, 'Status.CapList');
  assert.deepEqual(
    d.bars.map((b) => [b.index, b.kind, b.prefetchable, b.size]),
    [
      [0, 'mem64', true, 1n << 33n],
      [2, 'io', false, 8n],
      [3, 'mem32', false, 0x4000n],
      [4, 'mem64', false, 0x1000n],
    ],
  );
  assert.deepEqual(d.rom, { raw: 0, address: 0, enabled: false, size: 0x10000 });
  assert.deepEqual(
    d.capabilities.map((c) => c.kind),
    ['pm', 'msi', 'msix', 'pcie', 'vendor'],
  );
  const pm = d.capabilities[0] as DecodedPm;
  assert.equal(pm.version, 3);
  assert.equal(pm.d1, true);
  assert.equal(pm.d2, false);
  assert.equal(pm.pmeSupport, 0x19);
  assert.equal(pm.noSoftReset, true);
  const msi = d.capabilities[1] as DecodedMsi;
  assert.equal(msi.capableVectors, 4);
  assert.equal(msi.enabledVectors, 1);
  assert.equal(msi.address64, true);
  assert.equal(msi.perVectorMasking, true);
  assert.equal(msi.enabled, false);
  const msix = d.capabilities[2] as DecodedMsix;
  assert.deepEqual(
    [msix.tableSize, msix.tableBar, msix.tableOffset, msix.pbaBar, msix.pbaOffset, msix.enabled],
    [16, 3, 0, 3, 0x2000, false],
  );
  const pcie = d.capabilities[3] as DecodedPcie;
  assert.equal(pcie.version, 2);
  assert.equal(pcie.deviceType, 0);
  assert.equal(pcie.flrCapable, true);
  assert.equal(pcie.maxPayloadSupported, 256);
  const vendor = d.capabilities[4];
  assert.ok(vendor && vendor.kind === 'vendor');
  assert.deepEqual([...vendor.data], [1, 2, 3, 4, 5]);
  assert.equal(vendor.length, 8);
  assert.equal(d.extendedCapabilities.length, 2);
  const [dsn, vsec] = d.extendedCapabilities;
  assert.ok(dsn && dsn.kind === 'dsn');
  assert.equal(dsn.offset, 0x100);
  assert.equal(dsn.version, 1);
  assert.equal(dsn.serial, 0x0102030405060708n);
  assert.ok(vsec && vsec.kind === 'vendor');
  assert.equal(vsec.vsecId, 0xabcd);
  assert.equal(vsec.vsecRev, 2);
  assert.equal(vsec.vsecLength, 12);
  assert.deepEqual([...vsec.data], [9, 8, 7, 6]);
  assert.equal(vsec.next, 0);
});

test('numeric class code and 256-byte conventional space', () => {
  const cs = new PciConfigSpace({ vendorId: 0x8086, deviceId: 1, classCode: 0x020000 });
  assert.equal(cs.size, 256);
  const d = decodeConfigSpace(cs.bytes);
  assert.deepEqual(d.classCode, { base: 2, sub: 0, progIf: 0, value: 0x020000 });
  assert.equal(d.interruptPin, 0);
  assert.equal(d.status & 0x10, 0, 'no capabilities, no CapList');
  assert.equal(d.capabilityPointer, 0);
  assert.deepEqual(d.bars, []);
});

test('BAR sizing: all-ones reads back the size mask and the type bits for every kind', () => {
  const cs = new PciConfigSpace({
    vendorId: 1,
    deviceId: 2,
    classCode: 0,
    bars: [
      { kind: 'io', size: 32 },
      { kind: 'mem32', size: 0x1000 },
      { kind: 'mem32', size: 0x100000, prefetchable: true },
      undefined,
      { kind: 'mem64', size: 0x4000 }, // 64-bit below 4 GiB
    ],
    rom: { size: 0x8000 },
  });
  for (let i = 0; i < 6; i++) w32(cs, 0x10 + 4 * i, 0xffffffff);
  w32(cs, 0x30, 0xffffffff);
  assert.equal(r32(cs, 0x10), 0xffffffe1, 'io: ~(32-1) | 1');
  assert.equal(r32(cs, 0x14), 0xfffff000, 'mem32');
  assert.equal(r32(cs, 0x18), 0xfff00008, 'mem32 prefetchable');
  assert.equal(r32(cs, 0x1c), 0, 'empty BAR stays 0');
  assert.equal(r32(cs, 0x20), 0xffffc004, 'mem64 low dword: mask + type 10b');
  assert.equal(r32(cs, 0x24), 0xffffffff, 'mem64 < 4 GiB: upper dword fully writable');
  assert.equal(r32(cs, 0x28), 0, 'BAR5 empty');
  assert.equal(r32(cs, 0x30), 0xffff8001, 'ROM: mask + enable');
  // Programming an address keeps the type bits and drops bits below the size.
  w32(cs, 0x10, 0xc01f);
  assert.equal(r32(cs, 0x10), 0xc001);
  w32(cs, 0x20, 0x12345678);
  w32(cs, 0x24, 0x9);
  assert.equal(cs.barAddress(4), 0x9_12344000n);
  assert.equal(cs.barRegister(4), 0x9_12344004n);
  // Writing 0 reads back just the type bits.
  w32(cs, 0x18, 0);
  assert.equal(r32(cs, 0x18), 0x8);
});

test('BAR sizing: 64-bit BAR of 4 GiB and larger splits the mask across both dwords', () => {
  const cs = new PciConfigSpace({
    vendorId: 1,
    deviceId: 2,
    classCode: 0,
    bars: [{ kind: 'mem64', size: 1n << 32n }, undefined, { kind: 'mem64', size: 1n << 34n, prefetchable: true }],
  });
  for (const off of [0x10, 0x14, 0x18, 0x1c]) w32(cs, off, 0xffffffff);
  assert.equal(r32(cs, 0x10), 0x4, '4 GiB: no low address bits');
  assert.equal(r32(cs, 0x14), 0xffffffff);
  assert.equal(r32(cs, 0x18), 0xc, '16 GiB prefetchable: type bits only');
  assert.equal(r32(cs, 0x1c), 0xfffffffc);
});

test('ROM size 0 and no ROM: the ROM BAR reads 0 and ignores writes', () => {
  const cs = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0, rom: { size: 0 } });
  w32(cs, 0x30, 0xffffffff);
  assert.equal(r32(cs, 0x30), 0);
  assert.equal(cs.romEnabled, false);
});

test('read-only header registers ignore writes without throwing', () => {
  const cs = new PciConfigSpace(full);
  const before = cs.read(0, 64);
  // IDs, revision/class, header type, BIST, subsystem, cap pointer, pin, min/max.
  for (const off of [0x00, 0x02, 0x08, 0x0a, 0x0e, 0x2c, 0x2e, 0x34, 0x3c]) w16(cs, off, 0xffff);
  w32(cs, 0x28, 0xffffffff);
  const after = cs.read(0, 64);
  for (const off of [0, 1, 2, 3, 8, 9, 0xa, 0xb, 0xe, 0xf, 0x28, 0x2c, 0x2d, 0x2e, 0x2f, 0x34, 0x3d, 0x3e, 0x3f]) {
    assert.equal(after[off], before[off], `byte 0x${off.toString(16)} changed`);
  }
  assert.equal(after[0x3c], 0xff, 'Interrupt Line is stored');
});

test('cache line size, latency timer, interrupt line are stored', () => {
  const cs = new PciConfigSpace(full);
  cs.write(0x0c, new Uint8Array([0x10, 0x40]));
  cs.write(0x3c, new Uint8Array([11]));
  assert.deepEqual([...cs.read(0x0c, 2)], [0x10, 0x40]);
  assert.equal(cs.interruptLine, 11);
});

test('Command register: only the defined writable bits stick', () => {
  const cs = new PciConfigSpace(full);
  w16(cs, 0x04, 0xffff);
  assert.equal(r16(cs, 0x04), 0x0577);
  assert.equal(cs.busMasterEnabled, true);
  assert.equal(cs.intxDisabled, true);
  w16(cs, 0x04, 0x0002);
  assert.equal(r16(cs, 0x04), 0x0002);
  assert.equal(cs.busMasterEnabled, false);
  assert.equal(cs.memoryEnabled, true);
});

test('Status register: RW1C error bits, read-only elsewhere; INTx status tracks the line', () => {
  const cs = new PciConfigSpace(full);
  const base = r16(cs, 0x06);
  assert.equal(base, 0x0010);
  w16(cs, 0x06, 0xffff);
  assert.equal(r16(cs, 0x06), base, 'writing ones to clear bits that are not set changes nothing');
  cs.raiseStatus(0x2000 | 0x1000 | 0x8000);
  assert.equal(r16(cs, 0x06), 0xb010);
  w16(cs, 0x06, 0x2000); // clear only Received Master Abort
  assert.equal(r16(cs, 0x06), 0x9010);
  cs.write(0x07, new Uint8Array([0x90])); // byte write to the upper half
  assert.equal(r16(cs, 0x06), 0x0010);
  cs.setInterruptStatus(true);
  assert.equal(r16(cs, 0x06) & 0x8, 0x8);
  w16(cs, 0x06, 0x0008); // bit 3 is read-only
  assert.equal(r16(cs, 0x06) & 0x8, 0x8);
  cs.setInterruptStatus(false);
  assert.equal(r16(cs, 0x06) & 0x8, 0);
});

test('unaligned multi-register writes are applied byte-wise', () => {
  const cs = new PciConfigSpace(full);
  // Bytes 0x03..0x0d: device ID hi (RO), command, status, rev/class (RO), CLS, LT.
  cs.write(0x03, new Uint8Array([0xff, 0x06, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x20, 0x30]));
  assert.equal(r16(cs, 0x02), 0x11e8);
  assert.equal(r16(cs, 0x04), 0x0506, 'command: MEM+BME, SERR and INTx disable from 0xff');
  assert.equal(r16(cs, 0x06), 0x0010);
  assert.equal(cs.read(0x08, 1)[0], 0x10);
  assert.deepEqual([...cs.read(0x0c, 2)], [0x20, 0x30]);
});

test('out-of-range accesses throw ProtocolError EINVAL', () => {
  const cs = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0 });
  const isEinval = (e: unknown): boolean => e instanceof ProtocolError && e.errno === Errno.EINVAL;
  assert.throws(() => cs.read(255, 2), isEinval);
  assert.throws(() => cs.read(-1, 1), isEinval);
  assert.throws(() => cs.write(256, new Uint8Array(1)), isEinval);
  assert.throws(() => cs.write(250, new Uint8Array(8)), isEinval);
  assert.equal(cs.read(252, 4).length, 4);
  const copy = cs.read(0, 4);
  copy[0] = 0;
  assert.equal(cs.bytes[0], 1, 'read returns a copy');
});

test('capability list: automatic placement from 0x40, dword aligned, linked, no overlap', () => {
  const cs = new PciConfigSpace(full);
  const caps = cs.listCapabilities();
  const std = caps.filter((c) => !c.extended);
  assert.equal(std[0]!.offset, 0x40);
  assert.equal(cs.read(0x34, 1)[0], 0x40);
  for (let i = 0; i < std.length; i++) {
    const c = std[i]!;
    assert.equal(c.offset % 4, 0);
    assert.equal(cs.read(c.offset, 1)[0], c.id);
    assert.equal(cs.read(c.offset + 1, 1)[0], std[i + 1]?.offset ?? 0, 'next pointer');
    if (i > 0) assert.ok(c.offset >= std[i - 1]!.offset + std[i - 1]!.size, 'no overlap');
    assert.ok(c.offset + c.size <= 256);
  }
  assert.deepEqual(
    std.map((c) => [c.type, c.offset, c.size]),
    [
      ['pm', 0x40, 8],
      ['msi', 0x48, 24],
      ['msix', 0x60, 12],
      ['pcie', 0x6c, 60],
      ['vendor', 0xa8, 8],
    ],
  );
  const ext = caps.filter((c) => c.extended);
  assert.deepEqual(
    ext.map((c) => [c.type, c.offset, c.size]),
    [
      ['dsn', 0x100, 12],
      ['vendor', 0x10c, 12],
    ],
  );
  assert.equal(r32(cs, 0x100) >>> 20, 0x10c);
  assert.equal(cs.findCapability(0x05), 0x48);
  assert.equal(cs.findCapability(0x07), undefined);
  assert.equal(cs.findExtendedCapability(0x03), 0x100);
  assert.equal(cs.findExtendedCapability(0x0b), 0x10c);
  assert.equal(cs.capabilityAt(0x50)?.type, 'msi');
  assert.equal(cs.capabilityAt(0x3f), undefined);
  assert.equal(cs.capabilityAt(0x110)?.extended, true);
});

test('explicit offsets: honoured, auto caps fill around them, findNextCapability walks same-ID caps', () => {
  const cs = new PciConfigSpace({
    vendorId: 1,
    deviceId: 2,
    classCode: 0,
    capabilities: [
      { type: 'vendor', data: new Uint8Array(5), offset: 0x80 },
      { type: 'pm' },
      { type: 'vendor', data: new Uint8Array(1) },
      { type: 'msi', vectors: 1, address64: false, offset: 0x48 },
    ],
  });
  const std = cs.listCapabilities();
  assert.deepEqual(
    std.map((c) => [c.type, c.offset]),
    [
      ['pm', 0x40],
      ['msi', 0x48],
      ['vendor', 0x54],
      ['vendor', 0x80],
    ],
  );
  const d = decodeConfigSpace(cs.bytes);
  assert.deepEqual(
    d.capabilities.map((c) => c.offset),
    [0x40, 0x48, 0x54, 0x80],
  );
  assert.equal(cs.findCapability(9), 0x54);
  assert.equal(cs.findNextCapability(9, 0x54), 0x80);
  assert.equal(cs.findNextCapability(9, 0x80), undefined);
});

const isInvalid = (e: unknown): boolean => e instanceof VfioUserError && e.code === 'ERR_VFIO_USER_INVALID_DEVICE';

test('explicit placement collisions and bad offsets are rejected', () => {
  const base = { vendorId: 1, deviceId: 2, classCode: 0 };
  assert.throws(
    () => new PciConfigSpace({ ...base, capabilities: [{ type: 'pm', offset: 0x40 }, { type: 'msix', offset: 0x44, tableSize: 1, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 16 }], bars: [{ kind: 'mem32', size: 4096 }] }),
    isInvalid,
  );
  assert.throws(() => new PciConfigSpace({ ...base, capabilities: [{ type: 'pm', offset: 0x42 }] }), isInvalid);
  assert.throws(() => new PciConfigSpace({ ...base, capabilities: [{ type: 'pm', offset: 0x3c }] }), isInvalid);
  assert.throws(() => new PciConfigSpace({ ...base, capabilities: [{ type: 'pcie', offset: 0xd0 }] }), isInvalid, 'runs past 0x100');
  assert.throws(() => new PciConfigSpace({ ...base, express: true, extendedCapabilities: [{ type: 'dsn', serial: 1n, offset: 0x200 }] }), isInvalid, 'first ext cap not at 0x100');
  assert.throws(
    () => new PciConfigSpace({ ...base, express: true, extendedCapabilities: [{ type: 'dsn', serial: 1n }, { type: 'vendor', vsecId: 1, data: new Uint8Array(4), offset: 0x108 }] }),
    isInvalid,
  );
  assert.throws(() => new PciConfigSpace({ ...base, extendedCapabilities: [{ type: 'dsn', serial: 1n }] }), isInvalid, 'ext caps need express');
  // Too many to fit.
  assert.throws(() => new PciConfigSpace({ ...base, capabilities: Array.from({ length: 4 }, () => ({ type: 'pcie' as const })) }), isInvalid);
  assert.throws(() => new PciConfigSpace({ ...base, capabilities: [{ type: 'pm' }, { type: 'pm' }] }), isInvalid);
});

test('invalid descriptions are rejected with ERR_VFIO_USER_INVALID_DEVICE', () => {
  const base = { vendorId: 1, deviceId: 2, classCode: 0 };
  const bad: PciDeviceDescription[] = [
    { ...base, vendorId: 0x10000 },
    { ...base, vendorId: 0xffff },
    { ...base, classCode: 0x1000000 },
    { ...base, bars: [{ kind: 'mem32', size: 8 }] },
    { ...base, bars: [{ kind: 'io', size: 2 }] },
    { ...base, bars: [{ kind: 'mem32', size: 0x3000 }] },
    { ...base, bars: [undefined, { kind: 'mem64', size: 0x1000 }] },
    { ...base, bars: [{ kind: 'mem64', size: 0x1000 }, { kind: 'mem32', size: 0x1000 }] },
    { ...base, bars: [undefined, undefined, undefined, undefined, undefined, { kind: 'mem64', size: 0x1000 }] },
    { ...base, bars: [{ kind: 'io', size: 8, prefetchable: true }] },
    { ...base, rom: { size: 1024 } },
    { ...base, capabilities: [{ type: 'msi', vectors: 3 }] },
    { ...base, capabilities: [{ type: 'msix', tableSize: 4, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x40 }] },
    { ...base, bars: [{ kind: 'io', size: 256 }], capabilities: [{ type: 'msix', tableSize: 4, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x40 }] },
    { ...base, bars: [{ kind: 'mem32', size: 64 }], capabilities: [{ type: 'msix', tableSize: 4, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x40 }] },
    { ...base, bars: [{ kind: 'mem32', size: 4096 }], capabilities: [{ type: 'msix', tableSize: 4, tableBar: 0, tableOffset: 0, pbaBar: 0, pbaOffset: 0x20 }] },
  ];
  for (const [i, d] of bad.entries()) assert.throws(() => new PciConfigSpace(d), isInvalid, `case ${i}`);
  // Valid edges: 64-bit BAR4 with BAR5 empty, 16-byte mem, 4-byte io.
  new PciConfigSpace({ ...base, bars: [{ kind: 'mem32', size: 16 }, { kind: 'io', size: 4 }, undefined, undefined, { kind: 'mem64', size: 16 }] });
});

test('readOnly capability ignores writes; vendor capability writable only where asked', () => {
  const cs = new PciConfigSpace({
    vendorId: 1,
    deviceId: 2,
    classCode: 0,
    capabilities: [
      { type: 'msi', vectors: 2, readOnly: true },
      { type: 'vendor', data: new Uint8Array([0, 0, 0]), writable: new Uint8Array([0xff, 0x0f, 0]) },
      { type: 'vendor', data: new Uint8Array([0xaa]), callback: true },
    ],
  });
  const msi = cs.findCapability(5)!;
  w16(cs, msi + 2, 0xffff);
  assert.equal(cs.msiState()!.enabled, false);
  const v = cs.findCapability(9)!;
  cs.write(v, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
  assert.deepEqual([...cs.read(v, 6)], [9, cs.read(v + 1, 1)[0], 6, 0xff, 0x0f, 0]);
  const v2 = cs.findNextCapability(9, v)!;
  assert.equal(cs.capabilityAt(v2 + 3)?.callback, true);
  assert.equal(cs.capabilityAt(v)?.callback, false);
  assert.equal(cs.capabilityAt(msi)?.readOnly, true);
});

test('PM: PMCSR power state writable, unsupported states and read-only bits ignored', () => {
  const changes: [number, number][] = [];
  const cs = new PciConfigSpace(
    { vendorId: 1, deviceId: 2, classCode: 0, capabilities: [{ type: 'pm', d1: true, pmeSupport: 0 }] },
    { onPowerStateChange: (a, b) => changes.push([a, b]) },
  );
  const pm = cs.findCapability(1)!;
  w16(cs, pm + 4, 0x0003);
  assert.equal(cs.powerState, 3);
  w16(cs, pm + 4, 0x0002); // D2 unsupported: stays D3hot
  assert.equal(cs.powerState, 3);
  w16(cs, pm + 4, 0x0001);
  assert.equal(cs.powerState, 1);
  w16(cs, pm + 4, 0xfff0); // PME_En not writable without PME support; NoSoftReset RO
  assert.equal(r16(cs, pm + 4), 0x0008);
  w16(cs, pm + 2, 0);
  assert.equal(r16(cs, pm + 2), 0x0203, 'PMC is read-only');
  assert.deepEqual(changes, [
    [0, 3],
    [3, 1],
    [1, 0],
  ]);
});

test('MSI: enable, MME clamped to MMC, address/data/mask writable, hook fires with state', () => {
  const seen: MsiState[] = [];
  const cs = new PciConfigSpace(
    { vendorId: 1, deviceId: 2, classCode: 0, capabilities: [{ type: 'msi', vectors: 4, perVectorMasking: true }] },
    { onMsiChange: (s) => seen.push(s) },
  );
  const o = cs.findCapability(5)!;
  w32(cs, o + 4, 0xfee00003);
  w32(cs, o + 8, 0x1);
  w16(cs, o + 12, 0x4041);
  w32(cs, o + 16, 0xffffffff);
  w16(cs, o + 2, 0x0071); // enable, MME=7 (> MMC=2)
  const st = cs.msiState()!;
  assert.equal(st.enabled, true);
  assert.equal(st.address, 0x1_fee00000n, 'address bits 1:0 are reserved');
  assert.equal(st.data, 0x4041);
  assert.equal(st.multipleMessageEnable, 2);
  assert.equal(st.vectors, 4);
  assert.equal(st.maskBits, 0xf, 'only implemented vectors are maskable');
  assert.equal(r16(cs, o + 2) & 0x18e, 0x184, 'MMC/64-bit/maskable are read-only');
  assert.equal(seen.length, 5);
  assert.deepEqual(seen.at(-1), st);
  w32(cs, o + 20, 0xffffffff);
  assert.equal(cs.msiState()!.pendingBits, 0, 'pending bits are read-only to the guest');
  cs.setMsiPending(1, true);
  assert.equal(cs.msiState()!.pendingBits, 2);
  w16(cs, o + 2, 0x0071); // no change -> no hook
  assert.equal(seen.length, 5);
});

test('MSI 32-bit layout: data at +8, no upper address', () => {
  const cs = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0, capabilities: [{ type: 'msi', vectors: 1, address64: false }] });
  const o = cs.findCapability(5)!;
  assert.equal(cs.listCapabilities()[0]!.size, 10);
  w32(cs, o + 4, 0xfee01000);
  w16(cs, o + 8, 0x55);
  const st = cs.msiState()!;
  assert.equal(st.address, 0xfee01000n);
  assert.equal(st.data, 0x55);
  assert.equal(st.address64, false);
  const d = decodeConfigSpace(cs.bytes).capabilities[0] as DecodedMsi;
  assert.equal(d.address, 0xfee01000n);
  assert.equal(d.data, 0x55);
});

test('MSI-X: only Enable and Function Mask writable; hook reports the control state', () => {
  const seen: MsixControl[] = [];
  const cs = new PciConfigSpace(
    {
      vendorId: 1,
      deviceId: 2,
      classCode: 0,
      bars: [{ kind: 'mem32', size: 0x1000 }],
      capabilities: [{ type: 'msix', tableSize: 8, tableBar: 0, tableOffset: 0x800, pbaBar: 0, pbaOffset: 0xc00 }],
    },
    { onMsixControlChange: (c) => seen.push(c) },
  );
  const o = cs.findCapability(0x11)!;
  w16(cs, o + 2, 0xffff);
  assert.equal(r16(cs, o + 2), 0xc007);
  w32(cs, o + 4, 0);
  assert.equal(r32(cs, o + 4), 0x800);
  cs.write(o + 3, new Uint8Array([0x80])); // byte write: clear function mask, keep enable
  assert.deepEqual(cs.msixControl(), { enabled: true, functionMask: false });
  assert.deepEqual(seen, [
    { enabled: true, functionMask: true },
    { enabled: true, functionMask: false },
  ]);
});

test('PCIe: DevCtl writable fields; Initiate FLR self-clears, resets the function and fires onFlr', () => {
  const events: string[] = [];
  const cs = new PciConfigSpace(
    { ...full },
    {
      onFlr: () => events.push('flr'),
      onCommandChange: (a, b) => events.push(`cmd ${a.toString(16)}->${b.toString(16)}`),
    },
  );
  const o = cs.findCapability(0x10)!;
  assert.equal(r16(cs, o + 8), 0x2810);
  w16(cs, o + 8, 0x7fff);
  assert.equal(r16(cs, o + 8), 0x78ff, 'phantom/aux-pm/ext-tag (unsupported) stay 0');
  w16(cs, o + 4, 0);
  assert.notEqual(r32(cs, o + 4), 0, 'DevCap is read-only');
  w16(cs, 0x04, 0x0006);
  events.length = 0;
  w16(cs, o + 8, 0x8000 | 0x0020);
  assert.equal(r16(cs, o + 8) & 0x8000, 0, 'FLR bit reads back 0');
  assert.equal(r16(cs, o + 8), 0x2810, 'DevCtl back to defaults after FLR');
  assert.equal(cs.busMasterEnabled, false, 'FLR clears the command register');
  assert.deepEqual(events, ['cmd 6->0', 'flr']);
});

test('PCIe without FLR capability: the Initiate FLR bit is read-only and nothing fires', () => {
  let flr = 0;
  const cs = new PciConfigSpace(
    { vendorId: 1, deviceId: 2, classCode: 0, express: true, capabilities: [{ type: 'pcie' }] },
    { onFlr: () => flr++ },
  );
  const o = cs.findCapability(0x10)!;
  w16(cs, o + 8, 0x8000);
  assert.equal(flr, 0);
  assert.equal(r16(cs, o + 8), 0x0000);
  // DevSta error bits are RW1C (none set, nothing happens).
  w16(cs, o + 10, 0xffff);
  assert.equal(r16(cs, o + 10), 0);
});

test('hooks: command change and BAR change report old/new values', () => {
  const cmds: [number, number][] = [];
  const bars: [number, bigint][] = [];
  const cs = new PciConfigSpace(full);
  cs.hooks = { onCommandChange: (a, b) => cmds.push([a, b]), onBarChange: (i, v) => bars.push([i, v]) };
  w16(cs, 0x04, 0x0007);
  w16(cs, 0x04, 0x0007);
  w32(cs, 0x18, 0xc000); // io BAR2
  w32(cs, 0x14, 0xffffffff); // upper half of 64-bit BAR0 (8 GiB: mask 0xfffffffe)
  w32(cs, 0x30, 0xfebf0001); // ROM
  w32(cs, 0x1c, 0); // BAR3 unchanged (already 0)
  assert.deepEqual(cmds, [[0, 7]]);
  assert.deepEqual(bars, [
    [2, 0xc001n],
    [0, 0xfffffffe_0000000cn],
    [6, 0xfebf0001n],
  ]);
  assert.equal(cs.romEnabled, true);
  assert.equal(cs.barAddress(6), 0xfebf0000n);
});

test('reset() restores defaults and reports the changes', () => {
  const seen: MsiState[] = [];
  const cs = new PciConfigSpace(full, { onMsiChange: (s) => seen.push(s) });
  const o = cs.findCapability(5)!;
  w16(cs, o + 2, 1);
  w16(cs, 0x04, 4);
  cs.reset();
  assert.equal(cs.busMasterEnabled, false);
  assert.equal(seen.length, 2);
  assert.equal(seen[1]!.enabled, false);
  assert.deepEqual(cs.bytes, new PciConfigSpace(full).bytes);
});
