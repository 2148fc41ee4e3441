// The two data paths of Read and Write: synchronous pread/pwrite along the
// PRPs (the default up to MDTS) and the thread pool (syncIoMax 0, and FUA
// writes always) move the same bytes, across PRP lists and unaligned PRP1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNvmeDevice } from '../../samples/nvme/index.js';
import { connectInMemory, NvmeHost, PAGE } from '../../samples/nvme/host.js';
import { pattern } from './helpers/rig.js';

for (const syncIoMax of [0, 16384, undefined]) {
  test(`reads and writes with syncIoMax ${syncIoMax ?? 'default'}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nvme-io-'));
    const backing = join(dir, 'disk.img');
    const dev = createNvmeDevice({ backing, size: 8 << 20, ...(syncIoMax !== undefined ? { syncIoMax } : {}) });
    const client = await connectInMemory(dev.ctx);
    const h = await NvmeHost.attach(client);
    try {
      await h.enable();
      await h.createIoQueue(1, 32, 1);
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
    } finally {
      h.stop();
      await client.close();
      await dev.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
