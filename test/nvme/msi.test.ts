// The NVMe sample with `irq: 'msi'` (vfio-user nvme --irq msi): an MSI
// capability and no MSI-X, and completions signalled on MSI vectors, a CQ
// vector beyond the vectors the host enabled aliasing by its low bits.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { main } from '../../cli/main.js';
import { createNvmeDevice, NVME_MSI_VECTORS } from '../../samples/nvme/index.js';
import { connectInMemory, NvmeHost } from '../../samples/nvme/host.js';
import type { IrqEvent } from '../../src/client/irqs.js';

test('nvme --irq msi: MSI capability without MSI-X; completions on MSI vectors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-msi-'));
  const dev = createNvmeDevice({ backing: join(dir, 'disk.img'), size: 1 << 20, irq: 'msi' });
  const client = await connectInMemory(dev.ctx);
  try {
    const info = await client.getIrqInfo('msi');
    assert.equal(info.count, NVME_MSI_VECTORS);
    assert.equal((await client.getIrqInfo('msix')).count, 0, 'no MSI-X vectors');
    const host = await NvmeHost.attach(client, { msix: false });
    await assert.rejects(host.findCap(0x11), /not found/, 'no MSI-X capability');
    const msi = await host.findCap(0x05);
    const ctl = await client.regionRead(7, msi + 2, 2);
    assert.equal((ctl[0]! >> 1) & 7, Math.log2(NVME_MSI_VECTORS), 'Multiple Message Capable');
    // Enable MSI with 2 of the 16 vectors (MME = 1), as a driver would.
    await client.regionWrite(7, msi + 2, new Uint8Array([(ctl[0]! & ~0x70) | 0x10 | 1, ctl[1]!]));
    await client.enableIrqEventfds('msi', 0, 2);
    const seen: string[] = [];
    client.on('irq', (e: IrqEvent) => seen.push(`${e.index}:${e.vector}`));
    await host.enable();
    await host.createIoQueue(1, 16, 3); // vector 3 of 2 enabled: signalled on 3 & 1 = 1
    const data = new Uint8Array(4096).fill(0x5a);
    assert.equal((await host.write(1, 8, data)).status, 0);
    const back = await host.read(1, 8, 4096);
    assert.deepEqual(back.data, data);
    // The interrupts' eventfds are read on later turns of the loop: wait for them (a watchdog, not a timing check).
    for (let i = 0; i < 500 && !(seen.includes('1:0') && seen.includes('1:1')); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(seen.includes('1:0'), `admin completions on MSI vector 0: ${seen.join(' ')}`);
    assert.ok(seen.includes('1:1'), `I/O completions on MSI vector 1: ${seen.join(' ')}`);
    assert.ok(!seen.some((s) => s.startsWith('0:') || s.startsWith('2:')), `no INTx or MSI-X: ${seen.join(' ')}`);
    assert.equal(dev.stats.interruptsNotDelivered, 0);
    host.stop();
  } finally {
    await client.close();
    await dev.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('vfio-user nvme --irq: only msix or msi', async () => {
  let text = '';
  const io = { out: () => {}, err: (s: string) => void (text += s) };
  assert.equal(await main(['nvme', '--backing', 'x', '--size', '1M', '--irq', 'intx', 's'], io), 2);
  assert.equal(await main(['nvme', '--backing', 'x', '--size', '1M', '--irq'], io), 2);
  assert.match(text, /--irq wants msix or msi, not 'intx'/);
});
