// The NVMe sample with its I/O queues served from worker threads
// (startNvmeDevice({ ioWorkers: 2 }), what `vfio-user nvme --io-workers 2`
// runs), driven by our in-process host: two I/O queues land on two workers,
// data written on both reads back and is in the backing file, interrupts come
// straight from the workers, and resets, queue deletion and DMA unmaps keep
// working with commands in flight.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CSTS, REG, startNvmeDevice, type NvmeDevice } from '../../samples/nvme/index.js';
import { connectInMemory, NvmeHost } from '../../samples/nvme/host.js';
import type { IrqEvent } from '../../src/client/irqs.js';
import { nvmeRig, pattern, type NvmeRig } from './helpers/rig.js';

const SIZE = 8 << 20;

type Rig = NvmeRig<NvmeDevice>;

async function rig(opts: { msix?: boolean } = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-workers-'));
  const backing = join(dir, 'disk.img');
  const dev = await startNvmeDevice({ backing, size: SIZE, ioWorkers: 2 });
  const client = await connectInMemory(dev.ctx);
  const host = await NvmeHost.attach(client, { msix: opts.msix ?? true });
  await host.enable();
  // Two I/O queue pairs, as Linux asks for on a 2-vCPU guest.
  assert.equal((await host.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (1 << 16) | 1 })).code, 0);
  await host.createIoQueue(1, 64, 1);
  await host.createIoQueue(2, 64, 2);
  return nvmeRig(dev, client, host, backing, dir);
}

/** Resolves once `ok()` holds; a watchdog (not a timing check) fails a hung test. */
async function until(ok: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('--io-workers 2: both I/O queues are served by workers; data reads back and lands in the backing file', async () => {
  const r = await rig();
  try {
    const pool = r.dev.controller.ioWorkers!;
    assert.equal(pool.size, 2);
    assert.deepEqual([pool.doorbells.ownerOf(1), pool.doorbells.ownerOf(2)], [0, 1], 'queue 1 on worker 0, queue 2 on worker 1');
    const writes: Promise<unknown>[] = [];
    const expect = new Map<number, Uint8Array>();
    // Small (synchronous file I/O), PRP-list sized and 128 KiB (thread pool) transfers, on both queues at once.
    const sizes = [512, 4096, 12288, 65536, 131072];
    let lba = 0;
    for (let i = 0; i < 20; i++) {
      const len = sizes[i % sizes.length]!;
      const data = pattern(len, i + 1);
      expect.set(lba, data);
      writes.push(r.host.write(1 + (i % 2), lba, data).then((c) => assert.equal(c.code, 0, `write ${i}`)));
      lba += len / 512 + 7;
    }
    await Promise.all(writes);
    const perQueue = [0, 0];
    let i = 0;
    for (const [at, data] of expect) {
      const q = 1 + ((i + 1) % 2); // read back on the other queue
      const { cqe, data: back } = await r.host.read(q, at, data.length);
      assert.equal(cqe.code, 0);
      assert.equal(cqe.sqid, q);
      assert.deepEqual(back, data, `LBA ${at} read back on queue ${q}`);
      perQueue[q - 1]!++;
      i++;
    }
    // Flush through a worker, then the file holds every pattern.
    assert.equal((await r.host.submit(2, { opcode: 0x00, nsid: 1 })).code, 0);
    const file = readFileSync(r.backing);
    for (const [at, data] of expect) assert.deepEqual(file.subarray(at * 512, at * 512 + data.length), Buffer.from(data), `file at LBA ${at}`);

    // Counters are published right after a completion is posted: wait for the last ones.
    await until(() => pool.workerStats().reduce((n, s) => n + s.ioCommands, 0) === 41, 'every command counted');
    const per = pool.workerStats();
    assert.deepEqual(per.map((s) => s.ioCommands), [20, 21], 'each worker served its own queue');
    assert.equal(r.dev.stats.ioCommands, 0, 'no I/O command ran on the controller thread');
    const t = r.dev.ioWorkerStats()!;
    assert.equal(t.writeCommands, 20);
    assert.equal(t.readCommands, 20);
    assert.ok(t.interruptsDirect > 0, `workers wrote the client's eventfds themselves: ${JSON.stringify(t)}`);
    assert.ok(r.host.interrupts >= 2);
  } finally {
    await r.close();
  }
});

test('--io-workers: a masked vector is forwarded and held pending; unmasking delivers it', async () => {
  const r = await rig();
  try {
    // Mask vector 1 (SET_IRQS MASK): a worker must not write the eventfd behind the mask.
    await r.client.maskIrq('msix', 1);
    const before = r.dev.ioWorkerStats()!;
    const irqsBefore = r.host.interrupts;
    const done = r.host.write(1, 0, pattern(512, 9));
    // The completion is posted but its interrupt is held: reap by polling.
    let reaped = false;
    void done.then(() => (reaped = true));
    await until(() => (r.host.poll(), reaped), 'completion posted');
    assert.equal((await done).code, 0);
    await until(() => r.dev.ctx.irqs.isPending(2, 1), 'the forwarded trigger is pending behind the mask');
    // (A worker publishes its counters just after handing the interrupt over: wait for them.)
    await until(() => r.dev.ioWorkerStats()!.interruptsForwarded === before.interruptsForwarded + 1, 'the interrupt counted as forwarded');
    const after = r.dev.ioWorkerStats()!;
    assert.equal(after.interruptsDirect, before.interruptsDirect, 'nothing went around the mask');
    await r.client.unmaskIrq('msix', 1);
    await until(() => r.host.interrupts > irqsBefore, 'delivered on unmask');
    assert.equal(r.dev.ctx.irqs.isPending(2, 1), false);
    // Unmasked again: the next completion goes straight from the worker.
    assert.equal((await r.host.write(1, 8, pattern(512, 10))).code, 0);
    // (Counters are published after the completion is visible: wait for them.)
    await until(() => r.dev.ioWorkerStats()!.interruptsDirect === after.interruptsDirect + 1, 'a direct interrupt once unmasked');
    assert.equal(r.dev.ioWorkerStats()!.interruptsForwarded, after.interruptsForwarded);
  } finally {
    await r.close();
  }
});

test('--io-workers: delete SQ waits for its commands; controller reset and re-enable bring the queues back', async () => {
  const r = await rig();
  try {
    const big = pattern(128 << 10, 3);
    const inflight = [r.host.write(1, 100, big), r.host.write(2, 400, big)];
    const del = await r.host.admin({ opcode: 0x00, cdw10: 2 }); // Delete I/O SQ 2
    assert.equal(del.code, 0);
    assert.equal(r.dev.controller.ioWorkers!.doorbells.ownerOf(2), -1);
    // Both writes completed (the one on SQ 2 before its deletion did).
    const [a] = await Promise.all([inflight[0]!]);
    assert.equal(a!.code, 0);
    // Reset: CC.EN = 0, wait RDY = 0, then bring everything back up.
    await r.host.w32(REG.CC, 0);
    await r.host.waitCsts((s) => (s & CSTS.RDY) === 0);
    for (let q = 1; q <= 2; q++) assert.equal(r.dev.controller.ioWorkers!.doorbells.ownerOf(q), -1, `queue ${q} dropped by its worker`);
    r.host.queues.clear();
    await r.host.enable();
    assert.equal((await r.host.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (1 << 16) | 1 })).code, 0);
    await r.host.createIoQueue(1, 16, 1);
    await r.host.createIoQueue(2, 16, 2);
    for (const q of [1, 2]) {
      assert.equal((await r.host.write(q, 1000 + q * 8, pattern(4096, q))).code, 0);
      assert.deepEqual((await r.host.read(q, 1000 + q * 8, 4096)).data, pattern(4096, q));
    }
    assert.equal((await r.host.r32(REG.CSTS)) & CSTS.CFS, 0);
  } finally {
    await r.close();
  }
});

test('--io-workers with --irq msi: workers signal MSI vectors themselves (aliased by the low bits); INTx works through the controller', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-workers-msi-'));
  const dev = await startNvmeDevice({ backing: join(dir, 'disk.img'), size: 1 << 20, irq: 'msi', ioWorkers: 2 });
  const client = await connectInMemory(dev.ctx);
  try {
    const host = await NvmeHost.attach(client, { msix: false });
    const msi = await host.findCap(0x05);
    const ctl = await client.regionRead(7, msi + 2, 2);
    // MSI with 2 vectors enabled (MME = 1).
    await client.regionWrite(7, msi + 2, new Uint8Array([(ctl[0]! & ~0x70) | 0x10 | 1, ctl[1]!]));
    await client.enableIrqEventfds('msi', 0, 2);
    const seen: string[] = [];
    client.on('irq', (e: IrqEvent) => seen.push(`${e.index}:${e.vector}`));
    await host.enable();
    assert.equal((await host.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (1 << 16) | 1 })).code, 0);
    await host.createIoQueue(1, 16, 1);
    await host.createIoQueue(2, 16, 3); // vector 3 of 2 enabled: signalled on 3 & 1 = 1
    for (const q of [1, 2]) {
      const data = pattern(4096, q + 20);
      assert.equal((await host.write(q, q * 16, data)).code, 0);
      assert.deepEqual((await host.read(q, q * 16, 4096)).data, data);
    }
    await until(() => dev.ioWorkerStats()!.interrupts >= 4, 'interrupts counted');
    const t = dev.ioWorkerStats()!;
    assert.equal(t.interruptsDirect, t.interrupts, `every I/O interrupt written by a worker: ${JSON.stringify(t)}`);
    assert.ok(seen.includes('1:1'), `I/O completions on MSI vector 1: ${seen.join(' ')}`);
    assert.ok(!seen.some((s) => s.startsWith('0:') || s.startsWith('2:')), `no INTx or MSI-X: ${seen.join(' ')}`);

    // MSI off: the controller asserts INTx for the workers' CQs, and the host's reaping lowers it.
    await client.regionWrite(7, msi + 2, new Uint8Array([ctl[0]! & ~0x71, ctl[1]!]));
    await client.enableIrqEventfds('intx', 0, 1);
    const mark = seen.length;
    const data = pattern(512, 99);
    assert.equal((await host.write(2, 200, data)).code, 0);
    assert.deepEqual((await host.read(1, 200, 512)).data, data);
    await until(() => seen.includes('0:0'), 'an INTx interrupt');
    await until(() => !dev.ctx.irqs.intxAsserted, 'INTx deasserted once the host consumed the entries');
    assert.ok(!seen.slice(mark).some((x) => x.startsWith('1:')), `no MSI once it is off: ${seen.slice(mark).join(' ')}`);
    host.stop();
  } finally {
    await client.close();
    await dev.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--io-workers: the workers\' command set refuses what the controller refuses and zeroes what it zeroes', async () => {
  const r = await rig();
  try {
    const h = r.host;
    const buf = h.alloc(4096);
    const blocks = SIZE / 512;
    assert.equal((await h.submit(1, { opcode: 0x02, nsid: 2, prp1: buf, cdw12: 0 })).code, 0x0b, 'invalid namespace');
    assert.equal((await h.submit(2, { opcode: 0x02, nsid: 1, prp1: buf, cdw10: blocks, cdw12: 0 })).code, 0x80, 'LBA out of range');
    assert.equal((await h.submit(1, { opcode: 0x7f, nsid: 1 })).code, 0x01, 'invalid opcode');
    assert.equal((await h.submit(2, { opcode: 0x02, nsid: 1, flags: 0x40, prp1: buf, cdw12: 0 })).code, 0x02, 'SGLs refused');
    assert.equal((await h.submit(1, { opcode: 0x02, nsid: 1, prp1: buf + 2n, cdw12: 0 })).code, 0x13, 'PRP1 not dword aligned');
    assert.equal((await h.submit(1, { opcode: 0x02, nsid: 1, prp1: 0x7fff_0000_0000n, cdw12: 0 })).code, 0x04, 'unmapped data page');
    // Write Zeroes over written data, then read back zeros; broadcast flush; a DSM range list.
    assert.equal((await h.write(1, 64, pattern(8192, 5))).code, 0);
    assert.equal((await h.submit(2, { opcode: 0x08, nsid: 1, cdw10: 64, cdw12: 15 })).code, 0);
    assert.ok((await h.read(1, 64, 8192)).data.every((b) => b === 0), 'zeroed');
    assert.equal((await h.submit(2, { opcode: 0x00, nsid: 0xffffffff })).code, 0, 'broadcast flush');
    const ranges = h.alloc(4096);
    new DataView(h.mem.bytes.buffer, h.mem.bytes.byteOffset + Number(ranges)).setUint32(4, 8, true);
    assert.equal((await h.submit(1, { opcode: 0x09, nsid: 1, prp1: ranges, cdw10: 0, cdw11: 4 })).code, 0, 'DSM');
    // Shadow doorbells would bypass the workers' doorbell hand-off: not offered with workers.
    assert.equal((await h.admin({ opcode: 0x7c, prp1: h.alloc(4096), prp2: h.alloc(4096) })).code, 0x01, 'Doorbell Buffer Config refused');
    assert.equal((await h.r32(REG.CSTS)) & CSTS.CFS, 0, 'no fatal status');
  } finally {
    await r.close();
  }
});
