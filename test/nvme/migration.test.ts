// Live migration of the NVMe controller between two servers while our client
// plays the host driver (queues and data in its own memory) and keeps
// writing: registers, queue state and queued commands move; no write is lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNvmeDevice } from '../../samples/nvme/index.js';
import { GuestMemory } from '../../src/client/guest-memory.js';
import { connectInMemory, NvmeHost, type Cqe } from '../../samples/nvme/host.js';

const SIZE = 16 << 20;
const STOP = 1;
const RUNNING = 2;
const STOP_COPY = 3;
const RESUMING = 4;

const block = (i: number): Uint8Array => {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  for (let o = 0; o < 4096; o += 8) dv.setUint32(o, i, true), dv.setUint32(o + 4, o ^ (i * 2654435761), true);
  return b;
};

test('migration between two servers under a continuous write load loses no write', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-mig-'));
  const backing = join(dir, 'disk.img');
  const src = createNvmeDevice({ backing, size: SIZE });
  const dst = createNvmeDevice({ backing, size: SIZE });
  const clientA = await connectInMemory(src.ctx);
  // Guest RAM owned by the test (the VMM), not by either connection: it outlives the source's.
  const mem = new GuestMemory({ iova: 0, size: 16 << 20, useFd: true });
  await clientA.dmaMap({ iova: 0, size: mem.size, read: true, write: true, fd: mem.fd, offset: 0 });
  const host = await NvmeHost.attach(clientA, { mem });
  let clientB: Awaited<ReturnType<typeof connectInMemory>> | null = null;
  try {
    await host.enable();
    await host.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (1 << 16) | 1 });
    await host.createIoQueue(1, 64, 1);
    await host.createIoQueue(2, 64, 2);

    // Writer: block i goes to LBA 8*i on queue 1 + i%2, 16 in flight, buffers recycled after completion.
    const done = new Map<number, Cqe>();
    const bufs = Array.from({ length: 16 }, () => host.alloc(4096));
    let next = 0;
    let gate: Promise<void> = Promise.resolve();
    let stopAt = Infinity;
    const worker = async (slot: number): Promise<void> => {
      while (next < stopAt) {
        await gate;
        if (next >= stopAt) break;
        const i = next++;
        const c = await host.write(1 + (i % 2), i * 8, block(i), bufs[slot]);
        done.set(i, c);
      }
    };
    const workers = bufs.map((_, s) => worker(s));

    // Let it run on the source for a while.
    while (done.size < 150) await new Promise((r) => setTimeout(r, 2));

    // Pause the "VM" with doorbells just rung: those commands are either drained on the
    // source or still queued in the SQ, and move with it.
    let release!: () => void;
    gate = new Promise((r) => (release = r));
    const issuedBefore = next;
    host.paused = true;
    await clientA.setDeviceState(STOP_COPY);
    const chunks: Uint8Array[] = [];
    for (;;) {
      const { data } = await clientA.migDataRead(65536);
      if (data.length === 0) break;
      chunks.push(data);
    }
    const state = JSON.parse(new TextDecoder().decode(Buffer.concat(chunks))) as { sqs: { id: number; head: number; tail: number }[] };
    const queuedAtMove = state.sqs.reduce((n, q) => n + ((q.tail - q.head + 64) % 64) * (q.id === 0 ? 0 : 1), 0);

    // Destination: same guest memory, the PCI config a VMM restores, then the device state.
    clientB = await connectInMemory(dst.ctx);
    await clientB.dmaMap({ iova: host.mem.iova, size: host.mem.size, read: true, write: true, fd: host.mem.fd, offset: 0 });
    const hostB = host;
    hostB.listen(clientB);
    const oldClient = host.client;
    host.client = clientB;
    await host.setupPci(17, true);
    await clientB.setDeviceState(RESUMING);
    for (const c of chunks) await clientB.migDataWrite(c);
    await clientB.setDeviceState(STOP);
    await clientB.setDeviceState(RUNNING);
    await oldClient.close();
    host.paused = false;
    host.poll();
    release();

    // Keep writing on the destination, then stop.
    while (done.size < issuedBefore + 150) await new Promise((r) => setTimeout(r, 2));
    stopAt = next;
    await Promise.all(workers);

    assert.equal(done.size, next, 'every write completed');
    for (const [i, c] of done) assert.equal(c.code, 0, `write ${i} status`);
    const file = readFileSync(backing);
    for (let i = 0; i < next; i++) {
      assert.deepEqual(new Uint8Array(file.subarray(i * 4096, (i + 1) * 4096)), block(i), `block ${i} in the backing file`);
    }
    // And the destination reads them back over its own queues.
    host.resetHeap();
    for (const i of [0, 149, issuedBefore - 1, issuedBefore, next - 1]) {
      const r = await host.read(1, i * 8, 4096);
      assert.equal(r.cqe.code, 0);
      assert.deepEqual(r.data, block(i), `read back block ${i}`);
    }
    assert.ok(dst.stats.ioCommands >= 150, `destination ran ${dst.stats.ioCommands} I/O commands`);
    console.log(`# nvme migration: ${next} writes, ${issuedBefore} issued before the move, ${queuedAtMove} queued in SQs at the move, source ran ${src.stats.ioCommands}, destination ${dst.stats.ioCommands - 5} writes + 5 reads`);
  } finally {
    host.stop();
    await clientB?.close();
    await src.close();
    await dst.close();
    mem.free();
    rmSync(dir, { recursive: true, force: true });
  }
});
