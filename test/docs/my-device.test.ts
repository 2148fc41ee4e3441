// The guide's device (docs/examples/my-device.ts) driven by our client the
// way docs/writing-a-device.md does: config space and the MSI-X capability's
// shape, the callback BAR, the shared BAR, DMA into guest memory (mapped
// with and without fd) with an MSI-X completion, INTx as a level, reset,
// quiesce holding a reset behind a copy in flight, and live migration to a
// second instance with the registers and the shared BAR carried over.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { migrate, VfioUserClient } from '../../src/index.js';
import { BUFFER_SIZE, createMyDevice, DEVICE_ID_VALUE, Reg, STATUS_DONE, STATUS_ERROR, type MyDevice } from '../../docs/examples/my-device.js';

const u32 = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
};
const le32 = (b: Uint8Array, off = 0): number => new DataView(b.buffer, b.byteOffset, b.length).getUint32(off, true);
const le16 = (b: Uint8Array, off: number): number => b[off]! | (b[off + 1]! << 8);

async function reg(c: VfioUserClient, off: number): Promise<number> {
  return le32(await c.regionRead(0, off, 4));
}

/** What a VMM's guest driver does first: Memory Space + Bus Master, MSI-X on, eventfds for its vectors and INTx. */
async function enable(c: VfioUserClient, msixCap: number): Promise<void> {
  await c.regionWrite(7, 4, new Uint8Array([0x06, 0x00]));
  const ctl = le16(await c.regionRead(7, msixCap + 2, 2), 0) | 0x8000;
  await c.regionWrite(7, msixCap + 2, new Uint8Array([ctl & 0xff, ctl >> 8]));
  await c.enableIrqEventfds('msix', 0, 4);
  await c.enableIrqEventfds('intx', 0, 1);
}

function findCap(cfg: Uint8Array, id: number): number {
  for (let p = cfg[0x34]! & 0xfc; p; p = cfg[p + 1]! & 0xfc) if (cfg[p] === id) return p;
  throw new Error(`no capability 0x${id.toString(16)}`);
}

async function copy(c: VfioUserClient, iova: bigint, len: number): Promise<void> {
  await c.regionWrite(0, Reg.DMA_ADDR_LO, u32(Number(iova & 0xffffffffn)));
  await c.regionWrite(0, Reg.DMA_ADDR_HI, u32(Number(iova >> 32n)));
  await c.regionWrite(0, Reg.DMA_LEN, u32(len));
  await c.regionWrite(0, Reg.DMA_CMD, u32(1));
}

test('docs/examples/my-device.ts: every piece of the guide through our client, migration included', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-guide-'));
  const devices: MyDevice[] = [];
  const clients: VfioUserClient[] = [];
  try {
    const src = createMyDevice();
    devices.push(src);
    await src.ctx.listen(join(dir, 'src.sock'));
    const c = await VfioUserClient.connect(join(dir, 'src.sock'));
    clients.push(c);

    // Config space: IDs and the MSI-X capability as hardware lays it out.
    const cfg = await c.regionRead(7, 0, 256);
    assert.equal(le16(cfg, 0), 0x1234);
    assert.equal(le16(cfg, 2), 0xbeef);
    const msix = findCap(cfg, 0x11);
    assert.equal(le16(cfg, msix + 2) & 0x7ff, 3, 'Table Size is N-1');
    assert.equal(le32(cfg, msix + 4), 0x000 | 4, 'table: offset 0 in BAR4');
    assert.equal(le32(cfg, msix + 8), 0x800 | 4, 'PBA: offset 0x800 in BAR4');
    assert.equal(cfg[0x3d], 1, 'INTA#');
    assert.equal((await c.getIrqInfo('msix')).count, 4);

    // BAR0 answers through callbacks; BAR2 is shared memory.
    assert.equal(await reg(c, Reg.ID), DEVICE_ID_VALUE);
    await c.regionWrite(0, Reg.SCRATCH, u32(0xcafe));
    assert.equal(await reg(c, Reg.SCRATCH), 0xcafe);
    assert.equal((await c.getRegionInfo(0)).flags & 0x4, 0, 'BAR0 is not mappable');
    const bar2 = await c.mapRegion(2);
    bar2.areas[0]!.bytes.set(Buffer.from('written by the client through its mapping'));
    assert.equal(Buffer.from(src.ctx.region(2).memory!.subarray(0, 41)).toString(), 'written by the client through its mapping');

    // DMA into guest memory (fd-backed: in place), completion by MSI-X vector 0.
    await enable(c, msix);
    const mem = await c.createGuestMemory({ iova: 0x10_0000, size: 1 << 20, useFd: true });
    const pattern = Buffer.alloc(BUFFER_SIZE, 0).map((_, i) => (i * 7 + 3) & 0xff);
    bar2.areas[0]!.bytes.set(pattern);
    await copy(c, 0x10_0000n + 0x2000n, BUFFER_SIZE);
    assert.ok((await c.waitForIrq('msix', 0)) >= 1);
    assert.deepEqual(Buffer.from(mem.bytes.subarray(0x2000, 0x2000 + BUFFER_SIZE)), pattern);
    assert.equal(await reg(c, Reg.STATUS), STATUS_DONE);
    assert.equal(await reg(c, Reg.DONE_COUNT), 1);

    // Guest memory mapped without an fd: the same copy goes as DMA_WRITE messages.
    const msgMem = await c.createGuestMemory({ iova: 0x4000_0000, size: 1 << 16, useFd: false });
    await copy(c, 0x4000_0000n, 256);
    await c.waitForIrq('msix', 0);
    assert.deepEqual(Buffer.from(msgMem.bytes.subarray(0, 256)), pattern.subarray(0, 256));
    assert.ok(c.stats.dmaWrites >= 1, 'served as DMA_WRITE');

    // An address nobody mapped: the error bit, still a completion interrupt.
    await copy(c, 0x7000_0000n, 16);
    await c.waitForIrq('msix', 0);
    assert.equal(await reg(c, Reg.STATUS), STATUS_ERROR);

    // INTx is a level: asserted by IRQ=1, visible in the Interrupt Status bit, gone at IRQ=0.
    await c.regionWrite(0, Reg.IRQ, u32(1));
    assert.ok((await c.waitForIrq('intx', 0)) >= 1);
    assert.ok(((await c.regionRead(7, 6, 1))[0]! & 0x08) !== 0, 'Status.Interrupt set');
    await c.regionWrite(0, Reg.IRQ, u32(0));
    assert.equal((await c.regionRead(7, 6, 1))[0]! & 0x08, 0, 'Status.Interrupt clear');

    // Quiesce: DEVICE_RESET right behind a copy served over messages waits for the copy.
    await copy(c, 0x4000_0000n + 0x1000n, BUFFER_SIZE);
    await c.reset();
    assert.deepEqual(Buffer.from(msgMem.bytes.subarray(0x1000, 0x1000 + BUFFER_SIZE)), pattern, 'the copy finished before the reset');
    // Reset cleared the registers.
    assert.equal(await reg(c, Reg.SCRATCH), 0);
    assert.equal(await reg(c, Reg.DONE_COUNT), 0);
    assert.equal(await reg(c, Reg.ID), DEVICE_ID_VALUE);
    await msgMem.unmap();

    // Live migration to a second instance: registers and BAR2 travel.
    await c.regionWrite(0, Reg.SCRATCH, u32(0x5eed));
    bar2.areas[0]!.bytes.set(Buffer.from('carried across'));
    const dst = createMyDevice();
    devices.push(dst);
    await dst.ctx.listen(join(dir, 'dst.sock'));
    const phases: string[] = [];
    const { destination } = await migrate(c, join(dir, 'dst.sock'), { onProgress: (p) => phases.push(p.phase) });
    clients.push(destination);
    assert.deepEqual([...new Set(phases)], ['connect', 'pre-copy', 'stop-copy', 'restore', 'resume', 'done']);
    assert.equal(await reg(destination, Reg.SCRATCH), 0x5eed);
    assert.equal(Buffer.from(dst.ctx.region(2).memory!.subarray(0, 14)).toString(), 'carried across');
    // Config space is the VMM's to restore (QEMU saves it for VFIO devices); our client re-enables it.
    await destination.regionWrite(7, 4, new Uint8Array([0x06, 0x00]));
    const dctl = le16(await destination.regionRead(7, msix + 2, 2), 0) | 0x8000;
    await destination.regionWrite(7, msix + 2, new Uint8Array([dctl & 0xff, dctl >> 8]));
    // The destination reaches the same guest memory and interrupts.
    mem.bytes.fill(0, 0, 64);
    await copy(destination, 0x10_0000n, 64);
    assert.ok((await destination.waitForIrq('msix', 0)) >= 1);
    assert.deepEqual(Buffer.from(mem.bytes.subarray(0, 14)).toString(), 'carried across');
  } finally {
    for (const cl of clients) await cl.close().catch(() => {});
    for (const d of devices) await d.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
