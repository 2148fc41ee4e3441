// Interrupt Coalescing (feature 08h) from our client: completions are posted
// at once, but an I/O CQ's MSI-X interrupt waits for the aggregation
// threshold or the aggregation time; vectors with Coalescing Disable (feature
// 09h) and the admin CQ are never held. The aggregation timer runs on mocked
// timers, so nothing here depends on how fast the machine is.
import { mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNvmeDevice, type NvmeDevice } from '../../samples/nvme/index.js';
import { connectInMemory, NvmeHost, type Cqe } from '../../samples/nvme/host.js';
import type { VfioUserClient } from '../../src/client/client.js';

const SIZE = 4 << 20;

async function rig(): Promise<{ dev: NvmeDevice; client: VfioUserClient; host: NvmeHost; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-coal-'));
  const dev = createNvmeDevice({ backing: join(dir, 'disk.img'), size: SIZE });
  const client = await connectInMemory(dev.ctx);
  const host = await NvmeHost.attach(client);
  await host.enable();
  await host.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (1 << 16) | 1 });
  await host.createIoQueue(1, 64, 1);
  await host.createIoQueue(2, 64, 2);
  return {
    dev,
    client,
    host,
    async close() {
      mock.timers.reset();
      host.stop();
      await client.close();
      await dev.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Submits a read of LBA 0 on `qid` and waits for its completion by polling the CQ (not by interrupt). */
async function oneCommand(h: NvmeHost, qid: number): Promise<Cqe> {
  // A 512-byte read on I/O queues, Keep Alive on the admin queue.
  const done = h.submit(qid, qid === 0 ? { opcode: 0x18 } : { opcode: 0x02, nsid: 1, prp1: h.alloc(512), cdw10: 0 });
  let c: Cqe | undefined;
  void done.then((x) => (c = x));
  // Liveness watchdog, not a timing assertion: the completion is posted within a few turns.
  for (let i = 0; i < 2000 && !c; i++) {
    await new Promise((r) => setImmediate(r));
    h.poll();
  }
  assert.ok(c, 'completion posted');
  return c;
}

/** Lets eventfd interrupts reach the client (they arrive through the event loop). */
async function settle(h: NvmeHost): Promise<void> {
  await h.r32(0);
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

test('feature 08h: threshold and time hold I/O CQ interrupts; CD and the admin CQ are exempt', async () => {
  const r = await rig();
  try {
    const h = r.host;
    // THR = 3 (4 entries), TIME = 20 (2 ms).
    const set = await h.admin({ opcode: 0x09, cdw10: 0x08, cdw11: (20 << 8) | 3 });
    assert.equal(set.code, 0);
    assert.equal((await h.admin({ opcode: 0x0a, cdw10: 0x08 })).result, (20 << 8) | 3, 'Get Features reads it back');
    // Vector 2 opts out (feature 09h, CD = bit 16).
    assert.equal((await h.admin({ opcode: 0x09, cdw10: 0x09, cdw11: (1 << 16) | 2 })).code, 0);
    await settle(h);
    mock.timers.enable({ apis: ['setTimeout'] });

    const stats = r.dev.stats;
    let irqs = stats.interrupts;
    // Three completions on CQ 1: posted, but no interrupt yet.
    for (let i = 0; i < 3; i++) assert.equal((await oneCommand(h, 1)).code, 0);
    await settle(h);
    assert.equal(stats.interrupts, irqs, 'below the threshold: held');
    assert.ok(stats.interruptsCoalesced >= 3);
    // The fourth reaches THR + 1: the interrupt goes out at once.
    assert.equal((await oneCommand(h, 1)).code, 0);
    await settle(h);
    assert.equal(stats.interrupts, irqs + 1, 'threshold reached');
    irqs = stats.interrupts;

    // One more, then the aggregation time runs out.
    const hostIrqs = h.interrupts;
    assert.equal((await oneCommand(h, 1)).code, 0);
    await settle(h);
    assert.equal(stats.interrupts, irqs, 'held until the time passes');
    mock.timers.tick(2);
    await settle(h);
    assert.equal(stats.interrupts, irqs + 1, 'aggregation time expired');
    assert.ok(h.interrupts > hostIrqs, 'the client received it');
    irqs = stats.interrupts;

    // CQ 2's vector has Coalescing Disable: every completion interrupts.
    for (let i = 0; i < 2; i++) {
      assert.equal((await oneCommand(h, 2)).code, 0);
      await settle(h);
      assert.equal(stats.interrupts, irqs + i + 1, `CD vector, command ${i}`);
    }
    irqs = stats.interrupts;
    // The admin CQ is never coalesced.
    assert.equal((await oneCommand(h, 0)).code, 0);
    await settle(h);
    assert.equal(stats.interrupts, irqs + 1, 'admin completion interrupted at once');

    // Coalescing off again (value 0): each completion interrupts.
    mock.timers.reset();
    assert.equal((await h.admin({ opcode: 0x09, cdw10: 0x08, cdw11: 0 })).code, 0);
    await settle(h);
    irqs = stats.interrupts;
    assert.equal((await oneCommand(h, 1)).code, 0);
    await settle(h);
    assert.equal(stats.interrupts, irqs + 1);
  } finally {
    await r.close();
  }
});
