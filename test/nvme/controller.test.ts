// The NVMe sample against an in-process host (our client playing the nvme
// driver): bring-up, identify, queues, I/O with PRP lists, errors, interrupts,
// shutdown and resets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNvmeDevice, CSTS, REG, CC, type NvmeDevice } from '../../samples/nvme/index.js';
import { connectInMemory, NvmeHost, PAGE } from '../../samples/nvme/host.js';
import { nvmeRig, pattern, type NvmeRig } from './helpers/rig.js';

const SIZE = 8 << 20;

type Rig = NvmeRig<NvmeDevice>;

async function rig(opts: { msix?: boolean; enable?: boolean } = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-test-'));
  const backing = join(dir, 'disk.img');
  const dev = createNvmeDevice({ backing, size: SIZE });
  const client = await connectInMemory(dev.ctx);
  const host = await NvmeHost.attach(client, { msix: opts.msix ?? true });
  if (opts.enable ?? true) await host.enable();
  return nvmeRig(dev, client, host, backing, dir);
}

test('registers: CAP, VS, enable and disable handshake', async () => {
  const r = await rig({ enable: false });
  try {
    const cap = await r.host.r64(REG.CAP);
    assert.equal(Number(cap & 0xffffn) + 1, 1024, 'MQES');
    assert.equal((cap >> 16n) & 1n, 1n, 'CQR');
    assert.equal((cap >> 37n) & 1n, 1n, 'NVM command set');
    assert.equal((cap >> 32n) & 0xfn, 0n, 'doorbell stride 4');
    assert.equal(await r.host.r32(REG.VS), 0x10400);
    assert.equal(await r.host.r32(REG.CSTS), 0);
    await r.host.enable();
    assert.equal((await r.host.r32(REG.CSTS)) & CSTS.RDY, 1);
    // Bad queue entry sizes: enable refused with CFS.
    await r.host.w32(REG.CC, 0);
    await r.host.w32(REG.CC, CC.EN | (5 << CC.iosqesShift) | (4 << CC.iocqesShift));
    assert.equal((await r.host.r32(REG.CSTS)) & (CSTS.CFS | CSTS.RDY), CSTS.CFS);
    await r.host.enable();
    assert.equal(await r.host.r32(REG.CSTS), CSTS.RDY);
  } finally {
    await r.close();
  }
});

test('identify controller, namespace, active list and descriptors', async () => {
  const r = await rig();
  try {
    const h = r.host;
    const buf = h.alloc(PAGE);
    let c = await h.admin({ opcode: 0x06, prp1: buf, cdw10: 1 });
    assert.equal(c.code, 0);
    const id = h.bytesAt(buf, 4096).slice();
    const dv = new DataView(id.buffer);
    assert.match(new TextDecoder().decode(id.subarray(24, 64)), /^vfio-user-ts NVMe sample\s+$/);
    assert.equal(id[77], 8, 'MDTS');
    assert.equal(dv.getUint32(516, true), 1, 'NN');
    assert.equal(id[512], 0x66);
    assert.equal(id[513], 0x44);
    assert.equal(id[525], 1, 'volatile write cache');
    assert.equal(dv.getUint16(520, true) & 0xc, 0xc, 'ONCS DSM + Write Zeroes');
    c = await h.admin({ opcode: 0x06, prp1: buf, nsid: 1, cdw10: 0 });
    assert.equal(c.code, 0);
    const ns = new DataView(h.bytesAt(buf, 4096).slice().buffer);
    assert.equal(ns.getBigUint64(0, true), BigInt(SIZE / 512));
    assert.equal((ns.getUint32(128, true) >> 16) & 0xff, 9, '512-byte LBAs');
    c = await h.admin({ opcode: 0x06, prp1: buf, nsid: 0, cdw10: 2 });
    assert.deepEqual(Array.from(h.bytesAt(buf, 8)), [1, 0, 0, 0, 0, 0, 0, 0]);
    c = await h.admin({ opcode: 0x06, prp1: buf, nsid: 1, cdw10: 2 });
    assert.equal(new DataView(h.bytesAt(buf, 4).slice().buffer).getUint32(0, true), 0, 'no namespace after 1');
    c = await h.admin({ opcode: 0x06, prp1: buf, nsid: 1, cdw10: 3 });
    assert.equal(c.code, 0);
    assert.deepEqual([h.bytesAt(buf, 2)[0], h.bytesAt(buf, 2)[1]], [2, 16], 'NGUID descriptor');
    assert.equal((await h.admin({ opcode: 0x06, prp1: buf, nsid: 2, cdw10: 0 })).code, 0x0b, 'invalid namespace');
    assert.equal((await h.admin({ opcode: 0x06, prp1: buf, cdw10: 0x1f })).code, 0x02, 'invalid CNS');
  } finally {
    await r.close();
  }
});

test('features, logs, AER and Abort', async () => {
  const r = await rig();
  try {
    const h = r.host;
    let c = await h.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (63 << 16) | 63 });
    assert.equal(c.code, 0);
    assert.equal(c.result, (15 << 16) | 15, '16 SQs and CQs granted');
    c = await h.admin({ opcode: 0x0a, cdw10: 0x07 });
    assert.equal(c.result, (15 << 16) | 15);
    c = await h.admin({ opcode: 0x0a, cdw10: 0x06 });
    assert.equal(c.result, 1, 'write cache on');
    assert.equal((await h.admin({ opcode: 0x09, cdw10: 0x06, cdw11: 0 })).code, 0);
    assert.equal((await h.admin({ opcode: 0x0a, cdw10: 0x06 })).result, 0);
    assert.equal((await h.admin({ opcode: 0x09, cdw10: 0x80000006, cdw11: 1 })).code, 0x10d, 'not saveable');
    assert.equal((await h.admin({ opcode: 0x0a, cdw10: 0x7f })).code, 0x02, 'unknown feature');
    const buf = h.alloc(PAGE);
    c = await h.admin({ opcode: 0x02, prp1: buf, nsid: 0xffffffff, cdw10: 0x02 | (127 << 16) });
    assert.equal(c.code, 0);
    assert.equal(h.bytesAt(buf, 4)[3], 100, 'available spare');
    assert.equal((await h.admin({ opcode: 0x02, prp1: buf, cdw10: 0x01 | (15 << 16) })).code, 0);
    assert.equal((await h.admin({ opcode: 0x02, prp1: buf, cdw10: 0x42 | (15 << 16) })).code, 0x109, 'invalid log page');
    // AER stays outstanding; Abort answers "not aborted".
    let aerDone = false;
    void h.admin({ opcode: 0x0c }).then(() => (aerDone = true));
    c = await h.admin({ opcode: 0x08, cdw10: 0 });
    assert.equal(c.code, 0);
    assert.equal(c.result & 1, 1);
    assert.equal(aerDone, false);
    assert.equal(r.dev.controller.aers.length, 1);
    assert.equal((await h.admin({ opcode: 0xff })).code, 0x01, 'invalid opcode');
  } finally {
    await r.close();
  }
});

test('I/O queues: write and read back through PRP lists, backing file and MSI-X vectors', async () => {
  const r = await rig();
  try {
    const h = r.host;
    await h.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (1 << 16) | 1 });
    await h.createIoQueue(1, 64, 1);
    await h.createIoQueue(2, 64, 2);
    const irqsBefore = h.interrupts;
    for (const [qid, lba, len] of [[1, 0, 512], [2, 8, 4096], [1, 100, 8192], [2, 1000, 65536], [1, 4096, 1 << 20], [2, 7, 3 * 4096]] as const) {
      const data = pattern(len, lba);
      const w = await h.write(qid, lba, data);
      assert.equal(w.code, 0, `write ${lba}+${len}`);
      assert.equal(w.sqid, qid);
      const rd = await h.read(qid, lba, len);
      assert.equal(rd.cqe.code, 0);
      assert.deepEqual(rd.data, data, `read back ${lba}+${len}`);
      h.resetHeap();
    }
    const file = readFileSync(r.backing);
    assert.equal(file.length, SIZE);
    assert.deepEqual(new Uint8Array(file.subarray(4096 * 512, 4096 * 512 + (1 << 20))), pattern(1 << 20, 4096));
    assert.ok(h.interrupts > irqsBefore, 'completion interrupts arrived');
    assert.ok(r.client.pendingIrqs('msix', 1) + r.client.pendingIrqs('msix', 2) >= 0);
    assert.equal(r.dev.stats.interruptsNotDelivered, 0);
    // Unaligned PRP1 (offset 512 in its page) spanning three pages.
    const buf = h.alloc(4 * PAGE) + 512n;
    const data = pattern(8192, 99);
    assert.equal((await h.write(1, 50, data, buf)).code, 0);
    assert.deepEqual((await h.read(2, 50, 8192, h.alloc(3 * PAGE) + 1024n)).data, data);
  } finally {
    await r.close();
  }
});

test('chained PRP list over scattered pages', async () => {
  const r = await rig();
  try {
    const h = r.host;
    await h.createIoQueue(1, 16, 1);
    // 40 scattered pages; the list starts 24 bytes before its page end, so it chains twice.
    const pages: bigint[] = [];
    for (let i = 0; i < 40; i++) {
      pages.push(h.alloc(PAGE));
      h.alloc(PAGE); // gap
    }
    const data = pattern(40 * PAGE, 7);
    pages.forEach((p, i) => h.bytesAt(p, PAGE).set(data.subarray(i * PAGE, (i + 1) * PAGE)));
    const list = h.prpList(pages.slice(1), PAGE - 24);
    const n = 40 * 8 - 1;
    assert.equal((await h.submit(1, { opcode: 0x01, nsid: 1, prp1: pages[0]!, prp2: list, cdw10: 2000, cdw12: n })).code, 0);
    const rd = await h.read(1, 2000, 40 * PAGE);
    assert.deepEqual(rd.data, data);
  } finally {
    await r.close();
  }
});

test('error statuses: LBA range, namespace, opcode, SGL, queue creation and deletion', async () => {
  const r = await rig();
  try {
    const h = r.host;
    await h.createIoQueue(1, 16, 1);
    const buf = h.alloc(PAGE);
    const blocks = SIZE / 512;
    assert.equal((await h.submit(1, { opcode: 0x02, nsid: 1, prp1: buf, cdw10: blocks - 1, cdw12: 1 })).code, 0x80, 'LBA out of range');
    assert.equal((await h.submit(1, { opcode: 0x02, nsid: 1, prp1: buf, cdw10: blocks - 1, cdw12: 0 })).code, 0, 'last block ok');
    const bad = await h.submit(1, { opcode: 0x02, nsid: 3, prp1: buf });
    assert.equal(bad.code, 0x0b);
    assert.ok(bad.status & 0x4000, 'DNR set');
    assert.equal((await h.submit(1, { opcode: 0x7e, nsid: 1 })).code, 0x01, 'invalid I/O opcode');
    assert.equal((await h.submit(1, { opcode: 0x02, nsid: 1, flags: 0x40, prp1: buf })).code, 0x02, 'SGL refused');
    assert.equal((await h.submit(1, { opcode: 0x02, nsid: 1, prp1: buf + 2n })).code, 0x13, 'PRP offset');
    assert.equal((await h.submit(1, { opcode: 0x02, nsid: 1, prp1: 0x7fff0000000n })).code, 0x04, 'unmapped buffer: data transfer error');
    // Queue management.
    assert.equal((await h.admin({ opcode: 0x01, prp1: h.alloc(PAGE), cdw10: 5 | (15 << 16), cdw11: 1 | (9 << 16) })).code, 0x100, 'SQ on missing CQ');
    assert.equal((await h.admin({ opcode: 0x05, prp1: h.alloc(PAGE), cdw10: 1 | (15 << 16), cdw11: 3 })).code, 0x101, 'CQ id in use');
    assert.equal((await h.admin({ opcode: 0x05, prp1: h.alloc(PAGE), cdw10: 3 | (4095 << 16), cdw11: 3 })).code, 0x102, 'CQ too large');
    assert.equal((await h.admin({ opcode: 0x05, prp1: h.alloc(PAGE), cdw10: 3 | (15 << 16), cdw11: 3 | (99 << 16) })).code, 0x108, 'bad vector');
    assert.equal((await h.admin({ opcode: 0x04, cdw10: 1 })).code, 0x10c, 'CQ still has an SQ');
    assert.equal((await h.admin({ opcode: 0x00, cdw10: 1 })).code, 0);
    assert.equal((await h.admin({ opcode: 0x00, cdw10: 1 })).code, 0x101, 'SQ already deleted');
    assert.equal((await h.admin({ opcode: 0x04, cdw10: 1 })).code, 0);
    assert.equal(r.dev.controller.sqs[1], undefined);
  } finally {
    await r.close();
  }
});

test('Write Zeroes, Dataset Management, Flush and FUA', async () => {
  const r = await rig();
  try {
    const h = r.host;
    await h.createIoQueue(1, 16, 1);
    await h.write(1, 10, pattern(8 * 512, 3));
    assert.equal((await h.submit(1, { opcode: 0x08, nsid: 1, cdw10: 12, cdw12: 1 })).code, 0);
    const rd = await h.read(1, 10, 8 * 512);
    const expect = pattern(8 * 512, 3);
    expect.fill(0, 2 * 512, 4 * 512);
    assert.deepEqual(rd.data, expect);
    const ranges = h.alloc(PAGE);
    const dv = new DataView(h.mem.bytes.buffer, Number(ranges));
    dv.setUint32(4, 8, true);
    dv.setBigUint64(8, 10n, true);
    assert.equal((await h.submit(1, { opcode: 0x09, nsid: 1, prp1: ranges, cdw10: 0, cdw11: 4 })).code, 0);
    dv.setBigUint64(8, BigInt(SIZE / 512), true);
    assert.equal((await h.submit(1, { opcode: 0x09, nsid: 1, prp1: ranges, cdw10: 0, cdw11: 4 })).code, 0x80);
    assert.equal((await h.submit(1, { opcode: 0x00, nsid: 1 })).code, 0, 'flush');
    assert.equal((await h.submit(1, { opcode: 0x00, nsid: 0xffffffff })).code, 0, 'flush all namespaces');
    const buf = h.alloc(PAGE);
    assert.equal((await h.submit(1, { opcode: 0x01, nsid: 1, prp1: buf, cdw10: 0, cdw12: 1 << 30 })).code, 0, 'FUA write');
  } finally {
    await r.close();
  }
});

test('deep queue with a small CQ: completions wait for room, none lost', async () => {
  const r = await rig();
  try {
    const h = r.host;
    // CQ of 4 entries behind an SQ of 64: the controller must hold completions until the host frees CQ slots.
    await h.createIoQueue(1, 64, 1, true, 4);
    const writes: Uint8Array[] = [];
    const all: Promise<{ code: number }>[] = [];
    for (let i = 0; i < 40; i++) {
      const data = pattern(512, 100 + i);
      writes.push(data);
      const buf = h.alloc(512);
      h.bytesAt(buf, 512).set(data);
      all.push(h.enqueue(1, { opcode: 0x01, nsid: 1, prp1: buf, cdw10: 200 + i }));
    }
    await h.ring(1);
    const res = await Promise.all(all);
    assert.ok(res.every((c) => c.code === 0));
    assert.ok(r.dev.stats.cqFullWaits > 0, 'some completions waited for CQ room');
    const file = readFileSync(r.backing);
    for (let i = 0; i < 40; i++) assert.deepEqual(new Uint8Array(file.subarray((200 + i) * 512, (201 + i) * 512)), writes[i]);
  } finally {
    await r.close();
  }
});

test('shutdown, controller reset and FLR', async () => {
  const r = await rig();
  try {
    const h = r.host;
    await h.createIoQueue(1, 16, 1);
    await h.write(1, 0, pattern(4096, 1));
    const cc = await h.r32(REG.CC);
    await h.w32(REG.CC, cc | (1 << 14));
    const s = await h.waitCsts((v) => ((v >> 2) & 3) === 2);
    assert.equal(s & CSTS.RDY, 1);
    await h.w32(REG.CC, 0);
    await h.waitCsts((v) => v === 0);
    assert.equal(r.dev.controller.sqs[1], undefined, 'I/O queues gone after reset');
    await h.enable();
    assert.equal((await h.admin({ opcode: 0x06, prp1: h.alloc(PAGE), cdw10: 1 })).code, 0);
    // FLR through the PCIe capability's Device Control register.
    const pcie = await h.findCap(0x10);
    await r.client.regionWrite(7, pcie + 8, new Uint8Array([0x00, 0x80]));
    await h.waitCsts((v) => v === 0);
    assert.equal(await h.r32(REG.CC), 0);
    assert.equal(await h.r32(REG.AQA), 0, 'FLR clears the admin queue registers');
  } finally {
    await r.close();
  }
});

test('INTx fallback when MSI-X is off; INTMS masks it', async () => {
  const r = await rig({ msix: false });
  try {
    const h = r.host;
    const before = h.interrupts;
    assert.equal((await h.admin({ opcode: 0x06, prp1: h.alloc(PAGE), cdw10: 1 })).code, 0);
    await new Promise((res) => setTimeout(res, 20));
    assert.ok(h.interrupts > before, 'INTx fired');
    assert.equal(r.dev.stats.interruptsNotDelivered, 0);
    // Mask INTx (INTMS bit 0): completions still post, no interrupt.
    await h.w32(REG.INTMS, 1);
    assert.equal(await h.r32(REG.INTMS), 1);
    await new Promise((res) => setTimeout(res, 10));
    const mid = h.interrupts;
    assert.equal((await h.admin({ opcode: 0x06, prp1: h.alloc(PAGE), cdw10: 1 })).code, 0);
    await new Promise((res) => setTimeout(res, 20));
    assert.equal(h.interrupts, mid, 'masked');
    await h.w32(REG.INTMC, 1);
    assert.equal(await h.r32(REG.INTMS), 0);
  } finally {
    await r.close();
  }
});
