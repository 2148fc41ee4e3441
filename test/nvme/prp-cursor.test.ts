// The I/O path's PRP walker (PrpCursor: list entries read in place, one
// merged range at a time) against the list-building walker the admin path
// uses, over random layouts: PRP1 offsets, lengths, scattered and contiguous
// pages, list pages that chain. Also its refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNvmeDevice } from '../../samples/nvme/index.js';
import { connectInMemory, NvmeHost, PAGE } from '../../samples/nvme/host.js';
import { prpSegments } from '../../samples/nvme/prp.js';
import { NvmeStatus } from '../../samples/nvme/queues.js';

test('PrpCursor yields the same merged ranges as prpSegments on random layouts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-prp-'));
  const dev = createNvmeDevice({ backing: join(dir, 'disk.img'), size: 1 << 20 });
  const client = await connectInMemory(dev.ctx);
  const host = await NvmeHost.attach(client, { memSize: 32 << 20 });
  try {
    const c = dev.controller;
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let iter = 0; iter < 300; iter++) {
      host.resetHeap();
      const len = (1 + rand(2048)) * 512; // up to 1 MiB
      const prp1 = Number(host.alloc(PAGE)) + rand(1024) * 4;
      const first = PAGE - (prp1 % PAGE);
      const pages: bigint[] = [];
      for (let left = len - first; left > 0; left -= PAGE) {
        // Half the time the next page follows the previous one (a range that merges).
        const prev = pages[pages.length - 1] ?? BigInt(prp1 - (prp1 % PAGE));
        if (rand(2) === 0 && Number(prev) + PAGE < host.mem.size && pages.length > 0) {
          pages.push(prev + BigInt(PAGE));
          host.alloc(PAGE);
        } else {
          host.alloc(PAGE * rand(3));
          pages.push(host.alloc(PAGE));
        }
      }
      let prp2 = 0;
      if (pages.length === 1) prp2 = Number(pages[0]!);
      else if (pages.length > 1) prp2 = Number(host.prpList(pages, rand(PAGE / 8) * 8));
      const want = prpSegments(c.mem, prp1, prp2, len).map((s) => [Number(s.iova), s.len]);
      const got: number[][] = [];
      c.prp.start(prp1, prp2, len);
      while (c.prp.next()) got.push([c.prp.addr, c.prp.len]);
      assert.deepEqual(got, want, `layout ${iter}: len ${len}, prp1 0x${prp1.toString(16)}, ${pages.length} pages`);
    }
    // Refusals: misaligned PRP1, PRP2 entry, list pointer; an entry beyond guest memory.
    const code = (f: () => void): number => {
      try {
        f();
      } catch (e) {
        if (e instanceof NvmeStatus) return e.status & 0x7ff;
        throw e;
      }
      return 0;
    };
    const walk = (p1: number, p2: number, len: number) => () => {
      c.prp.start(p1, p2, len);
      while (c.prp.next());
    };
    assert.equal(code(walk(0x200002, 0, 512)), 0x13);
    assert.equal(code(walk(0x200000, 0x300010, 8192)), 0x13);
    assert.equal(code(walk(0x200000, 0x300004, 3 * PAGE)), 0x13);
    assert.equal(code(walk(0x200000, 64 << 20, 8192)), 0, 'a PRP2 data page is checked by the transfer, not the walk');
    assert.equal(code(walk(0x200000, 64 << 20, 3 * PAGE)), 0x4, 'a PRP list beyond guest memory');
  } finally {
    await client.close();
    await dev.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
