import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeConfigSpace } from '../../src/pci/decode.js';
import { formatConfigSpace, formatSize } from '../../src/pci/format.js';
import { PciConfigSpace } from '../../src/pci/config-space.js';
import type { PciDeviceDescription } from '../../src/pci/types.js';

const desc: PciDeviceDescription = {
  vendorId: 0x1234,
  deviceId: 0x11e8,
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
  classCode: 0x00ff00,
  revision: 1,
  express: true,
  intxPin: true,
  bars: [{ kind: 'io', size: 8 }, { kind: 'mem32', size: 0x100000 }, { kind: 'mem64', size: 0x4000, prefetchable: true }],
  rom: { size: 0x8000 },
  capabilities: [
    { type: 'pm' },
    { type: 'msi', vectors: 4, perVectorMasking: true },
    { type: 'msix', tableSize: 8, tableBar: 1, tableOffset: 0x2000, pbaBar: 1, pbaOffset: 0x3000 },
    { type: 'pcie', flr: true },
    { type: 'vendor', data: new Uint8Array(5) },
  ],
  extendedCapabilities: [
    { type: 'dsn', serial: 0x0102030405060708n },
    { type: 'vendor', vsecId: 0x1234, vsecRev: 1, data: new Uint8Array(8) },
  ],
};

test('formatConfigSpace prints lspci -vv style lines', () => {
  const cs = new PciConfigSpace(desc);
  cs.write(0x3c, new Uint8Array([11]));
  const text = formatConfigSpace(decodeConfigSpace(cs.bytes, { barSizes: [8, 0x100000, 0x4000], romSize: 0x8000 }));
  const lines = text.split('\n').map((l) => l.trim());
  const expect = [
    'Device 1234:11e8 class 00ff prog-if 00 (rev 01)',
    'Subsystem: 1af4:1100',
    'Control: I/O- Mem- BusMaster- SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx-',
    'Status: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-',
    'Interrupt: pin A routed to IRQ 11',
    'Region 0: I/O ports [size=8]',
    'Region 1: Memory (32-bit, non-prefetchable) [size=1M]',
    'Region 2: Memory (64-bit, prefetchable) [size=16K]',
    'Expansion ROM [disabled] [size=32K]',
    'Capabilities: [40] Power Management version 3',
    'Capabilities: [48] MSI: Enable- Count=1/4 Maskable+ 64bit+',
    'Capabilities: [60] MSI-X: Enable- Count=8 Masked-',
    'Vector table: BAR=1 offset=00002000',
    'PBA: BAR=1 offset=00003000',
    'Capabilities: [6c] Express (v2) Endpoint, MSI 00',
    'Capabilities: [a8] Vendor Specific Information: Len=08 <?>',
    'Capabilities: [100 v1] Device Serial Number 01-02-03-04-05-06-07-08',
    'Capabilities: [10c v1] Vendor Specific Information: ID=1234 Rev=1 Len=010 <?>',
  ];
  for (const e of expect) assert.ok(lines.includes(e), `missing line: ${e}\n---\n${text}`);
  assert.ok(!text.includes('!!'), 'no warnings');
});

test('formatConfigSpace shows programmed addresses and enables', () => {
  const cs = new PciConfigSpace(desc);
  cs.write(0x10, new Uint8Array([0x00, 0xc0, 0, 0]));
  cs.write(0x14, new Uint8Array([0, 0, 0xa0, 0xfe]));
  cs.write(0x04, new Uint8Array([0x07, 0]));
  const msi = cs.findCapability(5)!;
  cs.write(msi + 2, new Uint8Array([0x21, 0]));
  const text = formatConfigSpace(decodeConfigSpace(cs.bytes, { barSizes: [8, 0x100000] }));
  assert.match(text, /Region 0: I\/O ports at c000 \[size=8\]/);
  assert.match(text, /Region 1: Memory at fea00000 \(32-bit, non-prefetchable\) \[size=1M\]/);
  assert.match(text, /Control: I\/O\+ Mem\+ BusMaster\+/);
  assert.match(text, /MSI: Enable\+ Count=4\/4 Maskable\+ 64bit\+/);
});

test('formatSize uses lspci units', () => {
  assert.equal(formatSize(8), '8');
  assert.equal(formatSize(4096), '4K');
  assert.equal(formatSize(1n << 33n), '8G');
  assert.equal(formatSize(3000), '3000');
});

test('capability list loops and bad pointers are reported, not followed forever', () => {
  const b = new Uint8Array(256);
  b[0x06] = 0x10; // CapList
  b[0x34] = 0x40;
  b[0x40] = 0x09;
  b[0x41] = 0x50;
  b[0x42] = 4;
  b[0x50] = 0x01;
  b[0x51] = 0x40; // back to 0x40
  let d = decodeConfigSpace(b);
  assert.deepEqual(
    d.capabilities.map((c) => c.offset),
    [0x40, 0x50],
  );
  assert.ok(d.warnings.some((w) => w.includes('loops')));
  b[0x51] = 0x10; // into the header
  d = decodeConfigSpace(b);
  assert.ok(d.warnings.some((w) => w.includes('out of range')));
  b[0x51] = 0xfc; // PCIe cap would need 60 bytes from 0xfc
  b[0xfc] = 0x10;
  d = decodeConfigSpace(b);
  assert.equal(d.capabilities.at(-1)?.truncated, true);
  assert.ok(d.warnings.some((w) => w.includes('truncated')));
});

test('extended capability loops and out-of-range pointers stop the walk', () => {
  const b = new Uint8Array(4096);
  const put32 = (off: number, v: number): void => new DataView(b.buffer).setUint32(off, v >>> 0, true);
  put32(0x100, 0x3 | (1 << 16) | (0x200 << 20));
  put32(0x200, 0xb | (1 << 16) | (0x100 << 20));
  put32(0x204, 0x1 | (0xfff << 20)); // absurd VSEC length
  const d = decodeConfigSpace(b);
  assert.deepEqual(
    d.extendedCapabilities.map((c) => c.offset),
    [0x100, 0x200],
  );
  assert.ok(d.warnings.some((w) => w.includes('loops')));
  put32(0x200, 0xb | (1 << 16) | (0x80 << 20));
  assert.ok(decodeConfigSpace(b).warnings.some((w) => w.includes('out of range')));
});

test('decoder never throws on arbitrary bytes (fast-check)', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 4096, maxLength: 4096 })), (bytes) => {
      const d = decodeConfigSpace(bytes);
      assert.ok(d.capabilities.length <= 64);
      assert.ok(d.extendedCapabilities.length <= 1024);
      assert.equal(typeof formatConfigSpace(d), 'string');
    }),
    { numRuns: 500 },
  );
});

test('decoder never throws on mutated real config spaces (fast-check)', () => {
  const base = new PciConfigSpace(desc).bytes;
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: 255 })), { maxLength: 40 }), (edits) => {
      const b = base.slice();
      for (const [off, v] of edits) b[off] = v;
      const d = decodeConfigSpace(b, { barSizes: [8, 0x100000, 0x4000] });
      formatConfigSpace(d);
    }),
    { numRuns: 500 },
  );
});

test('random guest writes never throw and never touch read-only bytes (fast-check)', () => {
  const ro = [0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0a, 0x0b, 0x0e, 0x2c, 0x2d, 0x2e, 0x2f, 0x34, 0x3d];
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 4095 }), fc.uint8Array({ minLength: 1, maxLength: 8 })), { maxLength: 30 }),
      (writes) => {
        const cs = new PciConfigSpace(desc);
        const before = cs.read(0, 4096);
        for (const [off, data] of writes) {
          if (off + data.length <= 4096) cs.write(off, data);
        }
        for (const off of ro) assert.equal(cs.bytes[off], before[off]);
        const d = decodeConfigSpace(cs.bytes);
        assert.equal(d.capabilities.length, 5, 'capability headers are read-only');
        assert.equal(d.extendedCapabilities.length, 2);
      },
    ),
    { numRuns: 300 },
  );
});
