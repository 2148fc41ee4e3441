// Doorbell Buffer Config (admin 7Ch) as Linux's nvme driver uses it: the
// controller advertises it (OACS bit 8), I/O queues take their doorbells from
// the shadow page, the EventIdx values it publishes spare the host most MMIO
// doorbell writes, and nothing is lost when the host skips them (a full CQ,
// submissions while the controller is busy, a reset, a migration).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNvmeDevice, DOORBELL_BASE, type NvmeDevice } from '../../samples/nvme/index.js';
import { connectInMemory, DBBUF_DBS, DBBUF_EIS, needEvent, NvmeHost, PAGE } from '../../samples/nvme/host.js';
import { nvmeRig, pattern, type NvmeRig } from './helpers/rig.js';

const SIZE = 8 << 20;

type Rig = NvmeRig<NvmeDevice>;

async function rig(): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-dbbuf-'));
  const backing = join(dir, 'disk.img');
  const dev = createNvmeDevice({ backing, size: SIZE });
  const client = await connectInMemory(dev.ctx);
  const host = await NvmeHost.attach(client);
  await host.enable();
  return nvmeRig(dev, client, host, backing, dir);
}

/** rig() with Doorbell Buffer Config on and I/O queue pair 1 of 32 entries, as Linux sets them up. */
async function shadowRig(): Promise<Rig> {
  const r = await rig();
  try {
    assert.equal((await r.host.enableShadowDoorbells()).code, 0, 'Doorbell Buffer Config');
    await r.host.createIoQueue(1, 32, 1);
    return r;
  } catch (e) {
    await r.close();
    throw e;
  }
}

const u32At = (h: NvmeHost, at: bigint): number => new DataView(h.mem.bytes.buffer, h.mem.bytes.byteOffset + Number(at), 4).getUint32(0, true);

test('EventIdx arithmetic matches the driver: an update that passes the index needs the MMIO write', () => {
  assert.equal(needEvent(5, 6, 5), true, 'controller saw 5, host moves to 6');
  assert.equal(needEvent(4, 6, 5), false, 'controller still busy before 5: no MMIO');
  assert.equal(needEvent(0xffff, 6, 5), false, 'parked index: never');
  assert.equal(needEvent(0xffff, 0, 1023), true, 'a wrap passes a parked index');
});

test('OACS advertises Doorbell Buffer Config; bad buffers are refused', async () => {
  const r = await rig();
  try {
    const h = r.host;
    const id = h.alloc(PAGE);
    assert.equal((await h.admin({ opcode: 0x06, prp1: id, cdw10: 1 })).code, 0);
    const oacs = new DataView(h.mem.bytes.buffer, h.mem.bytes.byteOffset + Number(id) + 256, 2).getUint16(0, true);
    assert.equal(oacs & (1 << 8), 1 << 8, 'OACS bit 8');
    // Not page aligned, then beyond guest memory: Invalid Field, and the controller keeps MMIO doorbells.
    assert.equal((await h.enableShadowDoorbells({ dbs: DBBUF_DBS + 8n, eis: DBBUF_EIS })).code, 0x2);
    assert.equal((await h.enableShadowDoorbells({ dbs: DBBUF_DBS, eis: BigInt(h.mem.size) + 0x100000n })).code, 0x2);
    assert.equal(r.dev.controller.dbbuf, null);
    await h.createIoQueue(1, 16, 1);
    const data = pattern(4096, 1);
    assert.equal((await h.write(1, 0, data)).code, 0);
    assert.deepEqual((await h.read(1, 0, 4096)).data, data);
  } finally {
    await r.close();
  }
});

test('QD1 with shadow doorbells: one MMIO doorbell per command, none for the CQ head; data intact', async () => {
  const r = await shadowRig();
  try {
    const h = r.host;
    const q = h.queues.get(1)!;
    // The controller parked the CQ EventIdx (MSI-X on) and published the SQ tail it has seen.
    assert.equal(u32At(h, DBBUF_EIS + 12n), 0xffff, 'CQ 1 EventIdx parked');
    // A read answers after every write sent before it: the admin CQ doorbell of the queue creation is in.
    await h.r32(0);
    const before = { mmio: h.doorbellStats.mmio, server: r.dev.stats.doorbells, shadow: h.doorbellStats.shadowOnly };
    const N = 50; // more than the SQ depth: both rings wrap
    for (let i = 0; i < N; i++) {
      const data = pattern(4096, i);
      assert.equal((await h.write(1, i * 8, data)).code, 0);
      assert.deepEqual((await h.read(1, i * 8, 4096)).data, data);
      h.resetHeap();
    }
    const mmio = h.doorbellStats.mmio - before.mmio;
    const skipped = h.doorbellStats.shadowOnly - before.shadow;
    // 2N SQ doorbells, each rung (the controller is idle between commands), and 2N CQ head updates of which
    // only the wraps (2N / 32 of them) may ring.
    assert.ok(mmio <= 2 * N + Math.ceil((2 * N) / 32) + 1, `MMIO doorbells ${mmio} for ${2 * N} commands`);
    assert.ok(skipped >= 2 * N - Math.ceil((2 * N) / 32) - 1, `shadow-only CQ head updates ${skipped}`);
    await h.r32(0);
    assert.equal(r.dev.stats.doorbells - before.server, mmio, 'the server saw exactly the MMIO writes');
    // SQ EventIdx: the tail the controller processed last.
    assert.equal(u32At(h, DBBUF_EIS + 8n), q.sqTail);
    assert.equal(u32At(h, DBBUF_DBS + 8n), q.sqTail, 'shadow SQ tail');
    assert.equal(u32At(h, DBBUF_DBS + 12n), q.cqHead, 'shadow CQ head');
  } finally {
    await r.close();
  }
});

test('a command the host submits while the controller executes another completes under the same interrupt', async () => {
  const r = await shadowRig();
  try {
    const h = r.host;
    const a = pattern(4096, 1);
    const b = pattern(4096, 2);
    assert.equal((await h.write(1, 0, a)).code, 0);
    assert.equal((await h.write(1, 8, b)).code, 0);
    await h.r32(0);
    // The host submits the second read (shadow tail only: the controller is busy, so the EventIdx
    // spares the MMIO write) while the controller is inside the first one's file read.
    const ns = r.dev.namespace;
    const readAt = ns.readAt.bind(ns);
    const second: { read: ReturnType<NvmeHost['read']> | null } = { read: null };
    ns.readAt = (pos, buf, off, len) => {
      second.read ??= h.read(1, 8, 4096);
      readAt(pos, buf, off, len);
    };
    const irqs = r.dev.stats.interrupts;
    const mmio = h.doorbellStats.mmio;
    const first = await h.read(1, 0, 4096);
    assert.ok(second.read, 'the second read was submitted during the first');
    const got = await second.read;
    assert.equal(first.cqe.code, 0);
    assert.equal(got.cqe.code, 0);
    assert.deepEqual(first.data, a);
    assert.deepEqual(got.data, b);
    assert.equal(h.doorbellStats.mmio - mmio, 1, 'one MMIO doorbell: the second submission rang none');
    assert.equal(r.dev.stats.interrupts - irqs, 1, 'both completions under one interrupt');
  } finally {
    await r.close();
  }
});

test('the controller takes the SQ tail from the shadow page, not only from the MMIO value', async () => {
  const r = await shadowRig();
  try {
    const h = r.host;
    const datas: Uint8Array[] = [];
    const all: Promise<{ code: number }>[] = [];
    for (let i = 0; i < 8; i++) {
      const data = pattern(512, 50 + i);
      datas.push(data);
      const buf = h.alloc(512);
      h.bytesAt(buf, 512).set(data);
      all.push(h.enqueue(1, { opcode: 0x01, nsid: 1, prp1: buf, cdw10: 300 + i }));
    }
    // The shadow says 8 entries; the MMIO write says 1 (a host that rang early and kept filling the shadow).
    new DataView(h.mem.bytes.buffer, h.mem.bytes.byteOffset + Number(DBBUF_DBS) + 8, 4).setUint32(0, 8, true);
    await h.client.regionWrite(0, DOORBELL_BASE + 8, new Uint8Array([1, 0, 0, 0]));
    const res = await Promise.all(all);
    assert.ok(res.every((c) => c.code === 0));
    assert.equal(r.dev.stats.ioCommands, 8);
    const file = readFileSync(r.backing);
    for (let i = 0; i < 8; i++) assert.deepEqual(new Uint8Array(file.subarray((300 + i) * 512, (301 + i) * 512)), datas[i]);
  } finally {
    await r.close();
  }
});

test('a CQ full as far as the controller knows: it reads the shadow head or asks for a doorbell; no completion lost', async () => {
  const r = await rig();
  try {
    const h = r.host;
    assert.equal((await h.enableShadowDoorbells()).code, 0);
    // CQ of 4 entries behind an SQ of 64.
    await h.createIoQueue(1, 64, 1, true, 4);
    for (let round = 0; round < 3; round++) {
      const writes: Uint8Array[] = [];
      const all: Promise<{ code: number }>[] = [];
      for (let i = 0; i < 40; i++) {
        const data = pattern(512, round * 100 + i);
        writes.push(data);
        const buf = h.alloc(512);
        h.bytesAt(buf, 512).set(data);
        all.push(h.enqueue(1, { opcode: 0x01, nsid: 1, prp1: buf, cdw10: 200 + i }));
      }
      await h.ring(1);
      const res = await Promise.all(all);
      assert.ok(res.every((c) => c.code === 0));
      const file = readFileSync(r.backing);
      for (let i = 0; i < 40; i++) assert.deepEqual(new Uint8Array(file.subarray((200 + i) * 512, (201 + i) * 512)), writes[i]);
      h.resetHeap();
    }
    assert.ok(r.dev.stats.cqFullWaits > 0, 'completions waited for CQ room');
  } finally {
    await r.close();
  }
});

test('a controller reset drops the shadow doorbells; MMIO doorbells work again', async () => {
  const r = await rig();
  try {
    const h = r.host;
    assert.equal((await h.enableShadowDoorbells()).code, 0);
    await h.createIoQueue(1, 16, 1);
    assert.equal((await h.write(1, 0, pattern(4096, 3))).code, 0);
    assert.notEqual(r.dev.controller.dbbuf, null);
    // Garbage in the old shadow page must not matter after the reset.
    h.bytesAt(DBBUF_DBS, PAGE).fill(0x7f);
    await h.enable();
    assert.equal(r.dev.controller.dbbuf, null);
    await h.createIoQueue(1, 16, 1);
    const data = pattern(4096, 4);
    assert.equal((await h.write(1, 16, data)).code, 0);
    assert.deepEqual((await h.read(1, 16, 4096)).data, data);
  } finally {
    await r.close();
  }
});
