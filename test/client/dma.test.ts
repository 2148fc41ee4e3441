import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/binding.js';
import { countOpenFds } from '../../src/native/fds.js';
import { bitmapSetBits } from '../../src/protocol/dirty-bitmap.js';
import { ClientError, ClientErrorCode } from '../../src/client/index.js';
import { enableBusMaster, randomBytes, startRig, TRANSPORTS } from './rig.js';

const IOVA = 0x10_0000;

for (const kind of TRANSPORTS) {
  test(`${kind}: device DMA into fd-backed guest memory is direct and shared both ways`, async () => {
    const rig = await startRig(kind);
    const { client, ctx } = rig;
    try {
      await enableBusMaster(client);
      const mem = await client.createGuestMemory({ iova: IOVA, size: 0x4000, useFd: true });
      assert.equal(mem.mapped, true);
      assert.equal(ctx.dma.regions().length, 1);
      assert.ok(ctx.dma.isDirect(IOVA, 0x4000));
      const data = randomBytes(3000, 7);
      ctx.dma.writeSync(IOVA + 0x100, data);
      assert.deepEqual(mem.bytes.subarray(0x100, 0x100 + 3000), data);
      await ctx.dma.write(IOVA + 0x3000, new Uint8Array([1, 2, 3]));
      assert.deepEqual([...mem.bytes.subarray(0x3000, 0x3003)], [1, 2, 3]);
      mem.bytes.set([0xde, 0xad], 0x2000);
      assert.deepEqual([...ctx.dma.readSync(IOVA + 0x2000, 2)], [0xde, 0xad]);
      assert.deepEqual(client.stats.dmaReads + client.stats.dmaWrites, 0, 'no DMA messages for fd-backed memory');
      await mem.unmap();
      assert.equal(ctx.dma.regions().length, 0);
      assert.equal(mem.bytes.length, 0);
    } finally {
      await rig.close();
    }
  });

  test(`${kind}: device DMA into memory mapped without fd goes through messages, chunked at the client's 1024`, async () => {
    const rig = await startRig(kind, { client: { maxDataXferSize: 1024 } });
    const { client, ctx } = rig;
    try {
      await enableBusMaster(client);
      const mem = await client.createGuestMemory({ iova: IOVA, size: 0x4000, useFd: false });
      assert.equal(ctx.dma.isDirect(IOVA, 16), false);
      assert.throws(() => ctx.dma.writeSync(IOVA, new Uint8Array(4)));
      const data = randomBytes(5000, 3);
      await ctx.dma.write(IOVA + 100, data);
      assert.deepEqual(mem.bytes.subarray(100, 5100), data);
      assert.equal(client.stats.dmaWrites, 5, 'ceil(5000 / 1024) DMA_WRITE messages');
      assert.equal(client.stats.dmaBytesWritten, 5000);
      const src = randomBytes(3000, 9);
      mem.bytes.set(src, 0x3000 - 1500);
      assert.deepEqual(await ctx.dma.read(IOVA + 0x3000 - 1500, 3000), src);
      assert.equal(client.stats.dmaReads, 3);
      // The client tracks pages dirtied by the DMA writes it served.
      assert.deepEqual(bitmapSetBits(mem.takeClientDirty()), [0, 1]);
      assert.deepEqual(bitmapSetBits(mem.takeClientDirty()), [], 'read-and-clear');
      await ctx.dma.write(IOVA + 0x3ffc, new Uint8Array(4));
      assert.deepEqual(bitmapSetBits(mem.takeClientDirty(8192)), [1]);
      assert.equal(client.stats.errors, 0);
    } finally {
      await rig.close();
    }
  });

  test(`${kind}: twin socket carries the server's DMA requests`, async () => {
    const rig = await startRig(kind, { client: { twinSocket: true, maxDataXferSize: 1024 } });
    const { client, ctx } = rig;
    try {
      assert.equal(client.serverCaps.twinSocket?.supported, true);
      assert.ok(client.twin !== null);
      assert.ok(ctx.connection?.twin, 'server adopted its end');
      await enableBusMaster(client);
      const mem = await client.createGuestMemory({ iova: IOVA, size: 0x2000, useFd: false });
      const data = randomBytes(2500, 5);
      await ctx.dma.write(IOVA, data);
      assert.deepEqual(mem.bytes.subarray(0, 2500), data);
      assert.deepEqual(await ctx.dma.read(IOVA + 1, 2000), data.subarray(1, 2001));
      assert.equal(client.stats.dmaWrites, 3);
      assert.equal(client.stats.dmaReads, 2);
      assert.equal(client.stats.twinRequests, 5, 'every DMA request came over the twin socket');
    } finally {
      await rig.close();
    }
  });

  test(`${kind}: a full session leaves no fd open in the process`, async () => {
    // Peers of earlier tests may still be closing their ends (EOF seen on the next poll).
    await new Promise((r) => setTimeout(r, 50));
    const before = countOpenFds();
    const rig = await startRig(kind, { client: { twinSocket: true } });
    const { client, ctx } = rig;
    await enableBusMaster(client);
    const a = await client.createGuestMemory({ iova: IOVA, size: 0x2000, useFd: true });
    await client.createGuestMemory({ iova: IOVA + 0x2000, size: 0x2000, useFd: false });
    await ctx.dma.write(IOVA + 0x2000, new Uint8Array(64));
    await client.enableIrqEventfds('msi', 0, 4);
    await client.enableIrqEventfds('intx');
    ctx.irq.trigger('msi', 1);
    await client.waitForIrq('msi', 1);
    await client.mapRegion(1);
    const fds = await client.getRegionInfo(1, { keepFd: true });
    native.close(fds.fd!);
    assert.ok(countOpenFds() > before + 6);
    assert.equal(a.mapped, true);
    await rig.close();
    assert.equal(a.fd, -1);
    // The server closes its twin end when it sees our EOF on it: allow it a moment.
    for (let i = 0; i < 50 && countOpenFds() !== before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(countOpenFds(), before);
  });

  test(`${kind}: guest memory argument checks and unmapAll`, async () => {
    const rig = await startRig(kind);
    const { client, ctx } = rig;
    try {
      await assert.rejects(client.createGuestMemory({ iova: 0, size: 100, useFd: true }), (e: unknown) => e instanceof ClientError && e.code === ClientErrorCode.INVALID_ARG);
      await client.createGuestMemory({ iova: IOVA, size: 0x1000, useFd: true });
      await assert.rejects(client.createGuestMemory({ iova: IOVA, size: 0x1000, useFd: false }), (e: unknown) => e instanceof ClientError && e.code === ClientErrorCode.INVALID_ARG);
      const ro = await client.createGuestMemory({ iova: IOVA + 0x1000, size: 0x1000, useFd: true, readOnly: true });
      await enableBusMaster(client);
      assert.throws(() => ctx.dma.writeSync(IOVA + 0x1000, new Uint8Array(1)), /read-only/);
      assert.equal(ro.readOnly, true);
      await client.dmaUnmapAll();
      assert.equal(ctx.dma.regions().length, 0);
      assert.ok(client.guestMemories().every((m) => !m.mapped));
    } finally {
      await rig.close();
    }
  });
}

for (const kind of TRANSPORTS) {
  test(`${kind}: the server going away fails waiters and keeps guest memory readable until close()`, async () => {
    await new Promise((r) => setTimeout(r, 50));
    const before = countOpenFds();
    const rig = await startRig(kind, { client: { twinSocket: true } });
    const { client, ctx } = rig;
    const mem = await client.createGuestMemory({ iova: IOVA, size: 0x1000, useFd: true });
    mem.bytes[5] = 42;
    await client.enableIrqEventfds('intx');
    const waiting = client.waitForIrq('intx', 0, { timeoutMs: 0 });
    const closed = new Promise((r) => client.once('close', r));
    await ctx.close();
    await closed;
    assert.equal(client.closed, true);
    await assert.rejects(waiting, (e: unknown) => e instanceof ClientError && e.code === ClientErrorCode.CLOSED);
    await assert.rejects(client.getDeviceInfo(), (e: unknown) => e instanceof ClientError && e.code === ClientErrorCode.CLOSED);
    assert.equal(mem.bytes[5], 42);
    await client.close();
    assert.equal(mem.bytes.length, 0);
    for (let i = 0; i < 50 && countOpenFds() !== before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(countOpenFds(), before);
  });
}
