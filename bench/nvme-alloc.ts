// Bytes the NVMe sample allocates per command on its synchronous path: the
// controller is driven directly (the SQ and CQ doorbell writes go straight to
// its BAR0 handler, as the library's REGION_WRITE handler would call it), so
// the figure covers the controller, the PRP walk, the file I/O calls and the
// interrupt trigger, not the message path in front of it.
//
//   node --expose-gc --max-semi-space-size=128 --import tsx bench/nvme-alloc.ts [--commands N] [--size 4096]
//
// The young generation is made large enough that no scavenge runs during the
// measured loop; heap growth divided by commands is the allocation rate.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { createNvmeDevice, DOORBELL_BASE } from '../samples/nvme/index.js';
import { connectInMemory, ioCqBase, ioSqBase, NvmeHost } from '../samples/nvme/host.js';

const argv = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : def;
};
const N = Number(opt('--commands', '20000'));
const LEN = Number(opt('--size', '4096'));
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const dir = mkdtempSync(join(tmpdir(), 'nvme-alloc-'));
const dev = createNvmeDevice({ backing: join(dir, 'disk.img'), size: 64 << 20 });
const client = await connectInMemory(dev.ctx);
const host = await NvmeHost.attach(client, { memSize: 32 << 20 });
try {
  await host.enable();
  await host.admin({ opcode: 0x09, cdw10: 0x07, cdw11: 0 });
  const DEPTH = 256;
  await host.createIoQueue(1, DEPTH, 1);
  host.stop();
  const mem = host.mem.bytes;
  const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  const buf = Number(host.alloc(LEN));
  const { prp1, prp2 } = host.prps(BigInt(buf), LEN);
  const sq = Number(ioSqBase(1));
  const cq = Number(ioCqBase(1));
  const db = new Uint8Array(4);
  const dbv = new DataView(db.buffer);
  let tail = 0;
  let head = 0;
  let phase = 1;
  const one = (i: number): void => {
    const at = sq + tail * 64;
    dv.setUint32(at, (i & 1 ? 0x02 : 0x01) | (((i % 0xfff0) + 1) << 16), true); // alternate read / write
    dv.setUint32(at + 4, 1, true);
    dv.setBigUint64(at + 24, prp1, true);
    dv.setBigUint64(at + 32, prp2, true);
    dv.setUint32(at + 40, (i * 8) % 100000, true);
    dv.setUint32(at + 44, 0, true);
    dv.setUint32(at + 48, LEN / 512 - 1, true);
    tail = (tail + 1) % DEPTH;
    dbv.setUint32(0, tail, true);
    void dev.controller.write(DOORBELL_BASE + 8, db);
    const c = cq + head * 16;
    const dw3 = dv.getUint32(c + 12, true);
    if (((dw3 >>> 16) & 1) !== phase) throw new Error(`command ${i} did not complete synchronously`);
    if ((dw3 >>> 17) & 0x7ff) throw new Error(`command ${i} failed: status 0x${((dw3 >>> 17) & 0x7ff).toString(16)}`);
    head = (head + 1) % DEPTH;
    if (head === 0) phase ^= 1;
    dbv.setUint32(0, head, true);
    void dev.controller.write(DOORBELL_BASE + 12, db);
  };
  for (let i = 0; i < 5000; i++) one(i); // warm-up: optimized code, windows looked up
  gc();
  const before = v8.getHeapStatistics().used_heap_size;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) one(i);
  const ns = Number(process.hrtime.bigint() - t0);
  const after = v8.getHeapStatistics().used_heap_size;
  console.log(
    JSON.stringify({ commands: N, size: LEN, heapBytesPerCommand: Math.max(0, after - before) / N, usPerCommand: ns / 1000 / N, note: 'controller path only (doorbell write -> completion + interrupt trigger), no transport' }),
  );
} finally {
  await client.close();
  await dev.close();
  rmSync(dir, { recursive: true, force: true });
}
