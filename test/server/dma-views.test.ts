// DMA_UNMAP and the views a device holds. Every view, read or write, holds
// the unmap until it is released; at the unmap's deadline a view still held
// is revoked: its pages become an inaccessible placeholder, so an access in
// flight outside JS (a readv in the thread pool) fails with EFAULT and never
// lands in memory mapped afterwards. The device here has no quiesce hook that
// would drain its I/O first (the NVMe sample's does, which hides all this).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readv } from 'node:fs';
import { VfioUserClient } from '../../src/client/client.js';
import { native } from '../../src/native/binding.js';
import { DeviceContext } from '../../src/server/context.js';
import type { DmaRegionInfo } from '../../src/server/dma-table.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

async function rig(opts: { viewRevokeTimeoutMs?: number } = {}) {
  const unmapped: DmaRegionInfo[] = [];
  const warnings: string[] = [];
  const ctx = new DeviceContext(
    { vendorId: 1, deviceId: 2, dma: { onUnmap: (r) => void unmapped.push(r) } },
    {
      requireBusMaster: false,
      callbackTimeoutMs: 2000,
      ...opts,
      logger: { debug: () => {}, info: () => {}, warn: (m) => void warnings.push(m), error: (m) => void warnings.push(m) },
    },
  );
  const [a, b] = createMemoryPair({ dupFd: native.dup, closeFd: native.close });
  ctx.attach(b);
  const client = await VfioUserClient.over(a);
  return { ctx, client, unmapped, warnings };
}

test('DMA_UNMAP waits until the device released its read and write views', async () => {
  const { ctx, client, unmapped } = await rig();
  try {
    const mem = await client.createGuestMemory({ iova: 0x100000, size: 0x10000, useFd: true });
    mem.bytes.set([1, 2, 3], 0x2000);
    const rv = ctx.dma.view(0x102000, 3);
    const wv = ctx.dma.view(0x104000, 16, { write: true });
    assert.deepEqual(Array.from(rv.bytes), [1, 2, 3]);
    let answered = false;
    const unmap = mem.unmap().then(() => void (answered = true));
    while (unmapped.length === 0) await turns(1);
    await turns(10);
    assert.equal(answered, false, 'the unmap is not answered while views are held');
    wv.release();
    await turns(10);
    assert.equal(answered, false, 'a read view holds the unmap too');
    rv.release();
    rv.release(); // idempotent
    await unmap;
    assert.equal(rv.bytes.length, 0, 'views read as empty once unmapped');
    assert.equal(wv.bytes.length, 0);
    assert.throws(() => ctx.dma.view(0x102000, 3), /not mapped/);
  } finally {
    await client.close();
    await ctx.close();
  }
});

test('a view held past the deadline is revoked: a readv in flight fails with EFAULT and never reaches memory mapped later', async () => {
  const { ctx, client, warnings } = await rig({ viewRevokeTimeoutMs: 200 });
  const [rd, wr] = native.socketpair();
  native.setNonBlocking(rd, false);
  const placeholdersBefore = native.placeholderCount();
  try {
    const size = 0x40000;
    const mem = await client.createGuestMemory({ iova: 0x100000, size, useFd: true });
    // The device reads from a stream into guest memory: the readv blocks in the thread pool.
    const view = ctx.dma.view(0x100000, size, { write: true });
    const done = new Promise<NodeJS.ErrnoException | null>((resolve) => readv(rd, [view.bytes], (err) => resolve(err)));
    await mem.unmap();
    assert.equal(view.bytes.length, 0, 'the revoked view reads as empty');
    assert.ok(warnings.some((w) => /1 view\(s\) still held: revoked/.test(w)), warnings.join('\n'));
    assert.equal(native.placeholderCount(), placeholdersBefore + 1, 'the pages are held by a placeholder');
    // New guest memory of the same size: the kernel would happily reuse the old addresses.
    const next = await client.createGuestMemory({ iova: 0x900000, size, useFd: true });
    const probe = ctx.dma.view(0x900000, size);
    const payload = Buffer.alloc(size, 0x5a);
    let sent = 0;
    const deadline = setTimeout(() => assert.fail('readv never finished'), 10_000);
    while (sent < 4096) {
      const n = native.sendmsg(wr, payload, sent, size - sent, null);
      if (n < 0) break;
      sent += n;
    }
    const err = await done;
    clearTimeout(deadline);
    assert.equal(err?.code, 'EFAULT', `readv after revocation: ${String(err)}`);
    assert.ok(next.bytes.every((b) => b === 0), 'nothing landed in the memory mapped afterwards');
    assert.ok(probe.bytes.every((b) => b === 0));
    probe.release();
    view.release();
    assert.equal(native.placeholderCount(), placeholdersBefore, 'the late release frees the placeholder');
  } finally {
    native.close(rd);
    native.close(wr);
    await client.close();
    await ctx.close();
  }
});

test('a disconnect waits for views too and revokes those held past the deadline', async () => {
  const { ctx, client } = await rig({ viewRevokeTimeoutMs: 100 });
  const before = native.placeholderCount();
  await client.createGuestMemory({ iova: 0x100000, size: 0x10000, useFd: true });
  const v = ctx.dma.view(0x100000, 4096);
  const gone = ctx.waitForDisconnect();
  await client.close();
  await gone;
  assert.equal(v.bytes.length, 0);
  assert.equal(native.placeholderCount(), before + 1);
  v.release();
  assert.equal(native.placeholderCount(), before);
  await ctx.close();
});
