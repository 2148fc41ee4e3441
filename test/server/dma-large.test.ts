// DMA regions over 4 GiB (QEMU sends one for any guest with more than about
// 6 GiB of RAM): they are mapped in 1 GiB windows, on the main thread and in
// worker threads alike, whatever the region's offset in its file. The memfd
// is sparse: only the pages touched here are allocated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readSync, writeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { VfioUserClient } from '../../src/client/client.js';
import { native } from '../../src/native/binding.js';
import { DeviceContext } from '../../src/server/context.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';

const GiB = 1024 ** 3;
const REGION = 5 * GiB;
/** File offsets: 0, page-aligned but not window-aligned, and not even page-aligned. */
const OFFSETS = [0, 0x1000, 0x123];
const iovaOf = (i: number): bigint => BigInt(0x100_0000_0000 + i * 8 * GiB);
/** Region offsets in windows 0, 1 and 4 (beyond the first 4 GiB), and at the end. */
const SPOTS = [0x10, GiB + 0x2000, 4 * GiB + 0x345, REGION - 8];

interface Setup {
  ctx: DeviceContext;
  client: VfioUserClient;
  fds: number[];
  close(): Promise<void>;
}

async function setup(): Promise<Setup> {
  const ctx = new DeviceContext({ vendorId: 1, deviceId: 2 }, { requireBusMaster: false });
  const [a, b] = createMemoryPair({ dupFd: native.dup, closeFd: native.close });
  ctx.attach(b);
  const client = await VfioUserClient.over(a);
  const fds: number[] = [];
  for (let i = 0; i < OFFSETS.length; i++) {
    const fd = native.memfdCreate(`large-${i}`, false);
    native.ftruncate(fd, BigInt(OFFSETS[i]! + REGION));
    fds.push(fd);
  }
  return {
    ctx,
    client,
    fds,
    async close() {
      await client.close();
      await ctx.close();
      for (const fd of fds) native.close(fd);
    },
  };
}

const pattern = (i: number, s: number): number[] => [0xa0 + i, s, 0x5a, 0xc3, i * 16 + s, 0x11, 0x22, 0x33];

/** The bytes at file position `pos` of `fd`, read with pread (no mapping). */
function fileBytes(fd: number, pos: number, n: number): number[] {
  const b = Buffer.alloc(n);
  assert.equal(readSync(fd, b, 0, n, pos), n);
  return Array.from(b);
}

test('main thread: regions over 4 GiB at aligned and unaligned file offsets are reached in every window', async () => {
  const s = await setup();
  try {
    for (let i = 0; i < OFFSETS.length; i++) {
      await s.client.dmaMap({ iova: iovaOf(i), size: REGION, offset: OFFSETS[i]!, fd: s.fds[i]!, read: true, write: true });
    }
    for (let i = 0; i < OFFSETS.length; i++) {
      for (let k = 0; k < SPOTS.length; k++) {
        const spot = SPOTS[k]!;
        const data = Uint8Array.from(pattern(i, k));
        s.ctx.dma.writeSync(iovaOf(i) + BigInt(spot), data);
        assert.deepEqual(fileBytes(s.fds[i]!, OFFSETS[i]! + spot, 8), Array.from(data), `region ${i} spot ${k}: the write landed at its file position`);
        // And the other way: the file written behind the server's back reads back through a view.
        const back = [k, i, 1, 2, 3, 4, 5, 6];
        writeSync(s.fds[i]!, Buffer.from(back), 0, 8, OFFSETS[i]! + spot);
        const v = s.ctx.dma.view(iovaOf(i) + BigInt(spot), 8);
        assert.deepEqual(Array.from(v.bytes), back, `region ${i} spot ${k}: view`);
        v.release();
      }
      // A copy across the boundary of windows 3 and 4 works; a view there is refused cleanly.
      const across = iovaOf(i) + BigInt(4 * GiB - 4);
      s.ctx.dma.writeSync(across, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
      assert.deepEqual(fileBytes(s.fds[i]!, OFFSETS[i]! + 4 * GiB - 4, 8), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.deepEqual(Array.from(s.ctx.dma.readSync(across, 8)), [1, 2, 3, 4, 5, 6, 7, 8]);
    }
    const across = iovaOf(1) + BigInt(4 * GiB - 4);
    assert.throws(() => s.ctx.dma.view(across, 8), (e: Error & { errno?: number }) => e.errno === 14 && /window/.test(e.message));
    for (let i = 0; i < OFFSETS.length; i++) await s.client.dmaUnmap(iovaOf(i), REGION);
  } finally {
    await s.close();
  }
});

test('worker threads: regions over 4 GiB at aligned and unaligned file offsets are reached in every window', async () => {
  const s = await setup();
  const port = s.ctx.dmaWorkerPort();
  const worker = new Worker(new URL('../fixtures/ts-worker.mjs', import.meta.url), {
    workerData: { port, entry: new URL('../fixtures/dma-worker.ts', import.meta.url).href },
    transferList: [port],
  });
  // A worker that dies (as it did on ERANGE) fails the test instead of hanging it.
  let died: Error | null = null;
  const death = new Promise<never>((_, reject) => {
    worker.on('error', (e) => reject((died = e)));
    worker.on('exit', (c) => reject((died ??= new Error(`worker exited with ${c}`))));
  });
  death.catch(() => {});
  const ask = (m: object): Promise<{ ok: boolean; data?: number[]; regions: number; error?: string; stats?: { windowedRegions: number; windowedAccesses: number; highestWindowedIova: string } }> =>
    Promise.race([
      new Promise<never>((resolve) => {
        worker.once('message', resolve);
        worker.postMessage(m);
      }),
      death,
    ]);
  try {
    for (let i = 0; i < OFFSETS.length; i++) {
      await s.client.dmaMap({ iova: iovaOf(i), size: REGION, offset: OFFSETS[i]!, fd: s.fds[i]!, read: true, write: true });
    }
    assert.equal((await ask({ op: 'wait', n: OFFSETS.length })).regions, OFFSETS.length);
    for (let i = 0; i < OFFSETS.length; i++) {
      for (let k = 0; k < SPOTS.length; k++) {
        const spot = SPOTS[k]!;
        const iova = iovaOf(i) + BigInt(spot);
        const r = await ask({ op: 'write', iova, data: pattern(i, k) });
        assert.ok(r.ok, r.error);
        assert.deepEqual(fileBytes(s.fds[i]!, OFFSETS[i]! + spot, 8), pattern(i, k), `region ${i} spot ${k}: worker write landed`);
        assert.ok((await ask({ op: 'viewWrite', iova, data: [9, 8, 7, 6] })).ok);
        assert.deepEqual(fileBytes(s.fds[i]!, OFFSETS[i]! + spot, 4), [9, 8, 7, 6], `region ${i} spot ${k}: worker view write landed`);
        writeSync(s.fds[i]!, Buffer.from([k, i, 7]), 0, 3, OFFSETS[i]! + spot);
        const rv = await ask({ op: 'viewRead', iova, n: 3 });
        assert.deepEqual(rv.data, [k, i, 7], `region ${i} spot ${k}: worker view read`);
      }
      const across = iovaOf(i) + BigInt(4 * GiB - 4);
      assert.ok((await ask({ op: 'write', iova: across, data: [1, 2, 3, 4, 5, 6, 7, 8] })).ok);
      assert.deepEqual((await ask({ op: 'read', iova: across, n: 8 })).data, [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.deepEqual(fileBytes(s.fds[i]!, OFFSETS[i]! + 4 * GiB - 4, 8), [1, 2, 3, 4, 5, 6, 7, 8]);
    }
    const st = (await ask({ op: 'viewRead', iova: iovaOf(0) + BigInt(SPOTS[2]!), n: 1 })).stats!;
    assert.equal(st.windowedRegions, OFFSETS.length);
    assert.ok(st.windowedAccesses > 0);
    assert.equal(BigInt(st.highestWindowedIova), iovaOf(2) + BigInt(REGION - 8));
    for (let i = 0; i < OFFSETS.length; i++) await s.client.dmaUnmap(iovaOf(i), REGION);
    assert.equal((await ask({ op: 'noop' })).regions, 0);
    assert.equal(died, null);
  } finally {
    worker.removeAllListeners('exit');
    await worker.terminate();
    await s.close();
  }
});
