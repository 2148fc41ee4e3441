// The two data paths of Read and Write: synchronous pread/pwrite along the
// PRPs (the default up to MDTS) and the thread pool (syncIoMax 0, and FUA
// writes always) move the same bytes, across PRP lists and unaligned PRP1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNvmeDevice } from '../../samples/nvme/index.js';
import { connectInMemory, NvmeHost, PAGE } from '../../samples/nvme/host.js';
import type { VfioUserClient } from '../../src/client/client.js';
import { nvmeRig, pattern } from './helpers/rig.js';

/** An enabled controller on an 8 MiB namespace with I/O queue 1, driven by our host over the in-memory transport. */
async function withNvme(opts: { syncIoMax?: number }, body: (h: NvmeHost, client: VfioUserClient, backing: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-io-'));
  const backing = join(dir, 'disk.img');
  const dev = createNvmeDevice({ backing, size: 8 << 20, ...opts });
  const client = await connectInMemory(dev.ctx);
  const r = nvmeRig(dev, client, await NvmeHost.attach(client), backing, dir);
  try {
    await r.host.enable();
    await r.host.createIoQueue(1, 32, 1);
    await body(r.host, client, backing);
  } finally {
    await r.close();
  }
}

for (const syncIoMax of [0, 16384, undefined]) {
  test(`reads and writes with syncIoMax ${syncIoMax ?? 'default'}`, () =>
    withNvme(syncIoMax !== undefined ? { syncIoMax } : {}, async (h, _client, backing) => {
      for (const [lba, len, off] of [[0, 512, 0], [8, 4096, 0], [24, 8192, 512], [100, 65536, 0], [2048, 1 << 20, 0], [4000, 3 * PAGE, 1024]] as const) {
        const data = pattern(len, lba);
        const buf = h.alloc(len + PAGE) + BigInt(off);
        assert.equal((await h.write(1, lba, data, buf)).code, 0, `write ${lba}+${len}`);
        assert.deepEqual((await h.read(1, lba, len, h.alloc(len + PAGE) + BigInt(off))).data, data, `read ${lba}+${len}`);
        h.resetHeap();
      }
      // FUA (CDW12 bit 30) always goes through the pool and flushes.
      const fua = pattern(4096, 77);
      const at = h.alloc(PAGE);
      h.bytesAt(at, PAGE).set(fua);
      assert.equal((await h.submit(1, { opcode: 0x01, nsid: 1, prp1: at, cdw10: 64, cdw12: 7 | (1 << 30) })).code, 0);
      assert.deepEqual(new Uint8Array(readFileSync(backing).subarray(64 * 512, 64 * 512 + 4096)), fua);
      // A data page outside guest memory: Data Transfer Error, the controller keeps going.
      const bad = await h.submit(1, { opcode: 0x02, nsid: 1, prp1: BigInt(h.mem.size) + 0x100000n, cdw10: 0, cdw12: 7 });
      assert.equal(bad.code, 0x4);
      assert.equal((await h.read(1, 8, 4096)).cqe.code, 0);
    }));
}

// Data pages straddling two DMA regions (adjacent, each fd-backed): the
// synchronous path cannot take the range in one piece and goes page by
// page; a PRP list over pages of both regions goes through one vector. A
// region mapped without an fd is only reachable by message: Data Transfer
// Error, as for memory that is not mapped at all.
test('transfers across two DMA regions, and into one mapped without an fd', () =>
  withNvme({}, async (h, client, backing) => {
    const size = h.mem.size;
    const next = await client.createGuestMemory({ iova: BigInt(size), size: 1 << 20, useFd: true });
    const noFd = await client.createGuestMemory({ iova: BigInt(size) + (2n << 20n), size: 1 << 20, useFd: false });
    // 8 KiB from 512 bytes before the end of the first region: PRP1 (last page) + PRP2 (next region).
    const at = BigInt(size - PAGE + 3584);
    const data = pattern(4096, 9);
    const put = (addr: bigint, bytes: Uint8Array): void => {
      for (let i = 0; i < bytes.length; i++) {
        const a = addr + BigInt(i);
        if (a < BigInt(size)) h.mem.bytes[Number(a)] = bytes[i]!;
        else next.bytes[Number(a - BigInt(size))] = bytes[i]!;
      }
    };
    put(at, data);
    const w = await h.submit(1, { opcode: 0x01, nsid: 1, prp1: at, prp2: BigInt(size), cdw10: 16, cdw12: 7 });
    assert.equal(w.code, 0);
    assert.deepEqual(new Uint8Array(readFileSync(backing).subarray(16 * 512, 16 * 512 + 4096)), data);
    // Read it back into a straddling buffer, then through a PRP list: a page of each region, then one more.
    const big = pattern(12288, 4);
    assert.equal((await h.write(1, 100, big)).code, 0);
    const list = h.prpList([BigInt(size) + 0x1000n, BigInt(size) + 0x3000n]);
    const r = await h.submit(1, { opcode: 0x02, nsid: 1, prp1: BigInt(size - PAGE), prp2: list, cdw10: 100, cdw12: 23 });
    assert.equal(r.code, 0);
    assert.deepEqual(h.mem.bytes.slice(size - PAGE, size), big.subarray(0, 4096));
    assert.deepEqual(next.bytes.slice(0x1000, 0x2000), big.subarray(4096, 8192));
    assert.deepEqual(next.bytes.slice(0x3000, 0x4000), big.subarray(8192));
    // Memory without an fd: Data Transfer Error, and the queue goes on.
    const bad = await h.submit(1, { opcode: 0x02, nsid: 1, prp1: noFd.iova, cdw10: 0, cdw12: 7 });
    assert.equal(bad.code, 0x4);
    assert.equal((await h.read(1, 16, 4096)).cqe.code, 0);
  }));
