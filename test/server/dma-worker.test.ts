import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { VfioUserClient } from '../../src/client/client.js';
import { native } from '../../src/native/binding.js';
import { DeviceContext } from '../../src/server/context.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';

interface Reply {
  ok: boolean;
  data?: number[];
  regions: number;
  heldLength: number;
  error?: string;
  code?: string;
}

test('a worker thread maps guest memory itself; DMA_UNMAP waits until the worker dropped it', async () => {
  const ctx = new DeviceContext({ vendorId: 1, deviceId: 2 }, { requireBusMaster: false });
  const [a, b] = createMemoryPair({ dupFd: native.dup, closeFd: native.close });
  ctx.attach(b);
  const client = await VfioUserClient.over(a);
  const port = ctx.dmaWorkerPort();
  const worker = new Worker(new URL('../fixtures/ts-worker.mjs', import.meta.url), {
    workerData: { port, entry: new URL('../fixtures/dma-worker.ts', import.meta.url).href },
    transferList: [port],
  });
  const ask = (m: object): Promise<Reply> =>
    new Promise((resolve) => {
      worker.once('message', resolve);
      worker.postMessage(m);
    });
  try {
    const mem = await client.createGuestMemory({ iova: 0x40000, size: 0x4000, useFd: true });
    await client.startDirtyLogging(4096);
    assert.equal((await ask({ op: 'wait', n: 1 })).regions, 1);
    // Worker writes are visible to the client and marked dirty by the main thread.
    assert.ok((await ask({ op: 'write', iova: 0x41000, data: [1, 2, 3] })).ok);
    assert.deepEqual(Array.from(mem.bytes.subarray(0x1000, 0x1003)), [1, 2, 3]);
    await new Promise((r) => setTimeout(r, 20));
    const rep = await client.dirtyReport(0x40000, 0x4000, 4096);
    assert.equal(rep.bitmap[0], 0b0010);
    mem.bytes.set([9, 9], 0x2000);
    assert.deepEqual((await ask({ op: 'read', iova: 0x42000, n: 2 })).data, [9, 9]);
    // The worker holds a view; the unmap is answered only after it let go, and the view is detached.
    assert.equal((await ask({ op: 'hold', iova: 0x40000 })).heldLength, 16);
    await mem.unmap();
    const after = await ask({ op: 'read', iova: 0x40000, n: 1 });
    assert.equal(after.ok, false);
    assert.equal(after.code, 'ERR_VFIO_USER_DMA');
    assert.equal((await ask({ op: 'noop' })).heldLength, 0, 'a view held across the unmap reads as empty');
  } finally {
    await worker.terminate();
    await client.close();
    await ctx.close();
  }
});
