// Our server for the benchmarks: a DeviceContext listening on a UNIX socket,
// one client after another. Prints "listening" once the socket accepts.
//
//   node --import tsx bench/node/server.ts PATH bench       messages, interrupts, DMA
//   node --import tsx bench/node/server.ts PATH mig-src N   migration source (N bytes of state)
//   node --import tsx bench/node/server.ts PATH mig-dst N   migration destination
//
// The "bench" device: BAR0 is 4 KiB of plain device registers (read and
// write callbacks over a Uint8Array, as device code would do). BAR1 holds
// control registers the client writes (u64) to make the device run a
// benchmark from inside device code, and result registers it reads back:
//   0x00 W: raise N MSI interrupts in a loop        -> 0x100 ns
//   0x08 W: DMA through views, chunk C bytes, over the first DMA region,
//           PASSES (0x20) times each way            -> 0x108 read ns, 0x110 write ns, 0x118 bytes
//   0x10 W: DMA_READ then DMA_WRITE messages, N bytes in 1 MiB pieces, at the first region
//                                                   -> 0x108 read ns, 0x110 write ns, 0x118 bytes
//   0x20 W: passes for 0x08 (default 3)
import { constants, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import { DeviceContext } from '../../src/server/context.js';
import type { DeviceDescription, MigrationCallbacks } from '../../src/server/device.js';

const [path, kind = 'bench', sizeArg] = process.argv.slice(2);
if (!path) {
  console.error('usage: server.ts PATH bench|mig-src|mig-dst [STATE_BYTES]');
  process.exit(2);
}

const bar0 = new Uint8Array(4096);
const results = new BigUint64Array(8);
const resultBytes = new Uint8Array(results.buffer);
let passes = 3;
let ctx: DeviceContext;

const hr = (): bigint => process.hrtime.bigint();

function raiseInterrupts(n: number): void {
  const t0 = hr();
  for (let i = 0; i < n; i++) ctx.irq.trigger('msi', 0);
  results[0] = hr() - t0;
}

function firstRegion() {
  const r = ctx.dma.regions()[0];
  if (!r) throw new Error('no DMA region mapped');
  return r;
}

function dmaViews(chunk: number): void {
  const r = firstRegion();
  const size = Math.floor(Number(r.size) / chunk) * chunk;
  const buf = new Uint8Array(chunk).fill(0x5a);
  let rns = 0n;
  let wns = 0n;
  let sink = 0;
  for (let p = 0; p < passes; p++) {
    const t0 = hr();
    for (let off = 0; off < size; off += chunk) {
      const v = ctx.dma.view(r.iova + BigInt(off), chunk);
      buf.set(v.bytes);
      v.release();
      sink ^= buf[off % chunk]!;
    }
    const t1 = hr();
    for (let off = 0; off < size; off += chunk) {
      const v = ctx.dma.view(r.iova + BigInt(off), chunk, { write: true });
      v.bytes.set(buf);
      v.release();
    }
    const t2 = hr();
    rns += t1 - t0;
    wns += t2 - t1;
  }
  results[1] = rns;
  results[2] = wns;
  results[3] = BigInt(size * passes) + BigInt(sink & 0);
}

/** 1 MiB at a time, as a device moves data: each read returns a new buffer, writes reuse one. */
async function dmaMessages(bytes: number): Promise<void> {
  const r = firstRegion();
  const chunk = 1 << 20;
  const t0 = hr();
  let last: Uint8Array = new Uint8Array(0);
  for (let off = 0; off < bytes; off += chunk) last = await ctx.dma.read(r.iova + BigInt(off), Math.min(chunk, bytes - off), { viaMessages: true });
  const t1 = hr();
  for (let off = 0; off < bytes; off += chunk) await ctx.dma.write(r.iova + BigInt(off), last.subarray(0, Math.min(chunk, bytes - off)), { viaMessages: true });
  const t2 = hr();
  results[1] = t1 - t0;
  results[2] = t2 - t1;
  results[3] = BigInt(bytes);
}

function control(off: number, data: Uint8Array): void | Promise<void> {
  if (data.length !== 8) throw new Error('control registers take 8-byte writes');
  const v = Number(new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0, true));
  switch (off) {
    case 0x00:
      return raiseInterrupts(v);
    case 0x08:
      return dmaViews(v);
    case 0x10:
      return dmaMessages(v);
    case 0x20:
      passes = v;
      return;
    default:
      throw new Error(`no control register at ${off}`);
  }
}

function migration(size: number, source: boolean): MigrationCallbacks {
  const state = new Uint8Array(size);
  // Touch every page now: first-touch page faults are not part of the transfer.
  for (let i = 0; i < size; i += 4096) state[i] = source ? (i >>> 12) | 1 : 1;
  let pos = 0;
  return {
    preCopy: false,
    transition(to) {
      if (to === 'STOP_COPY' || to === 'RESUMING') pos = 0;
    },
    read(max) {
      const n = Math.min(max, size - pos);
      const out = state.subarray(pos, pos + n);
      pos += n;
      return out;
    },
    write(data) {
      if (pos + data.length > size) throw new Error('migration stream longer than the state');
      state.set(data, pos);
      pos += data.length;
    },
  };
}

const desc: DeviceDescription = {
  vendorId: 0x1b36,
  deviceId: 0x0010,
  regions: {
    // Plain device registers, in the allocation-free callback forms.
    0: {
      size: 4096,
      readInto: (off, n, out, at) => {
        for (let i = 0; i < n; i++) out[at + i] = bar0[off + i]!;
      },
      writeFrom: (off, src, at, n) => {
        for (let i = 0; i < n; i++) bar0[off + i] = src[at + i]!;
      },
    },
    1: { size: 4096, read: (off, n) => resultBytes.slice(off - 0x100, off - 0x100 + n), write: control },
  },
  irqs: { intx: 1, msi: 1 },
};
if (kind === 'mig-src' || kind === 'mig-dst') desc.migration = migration(Number(sizeArg ?? 256 * 1048576), kind === 'mig-src');

// VFU_BENCH_DEDICATED=1: the dedicated-thread mode (blocking receive) instead of the event loop.
const dedicatedThread = process.env.VFU_BENCH_DEDICATED === '1';
ctx = new DeviceContext(desc, { requireBusMaster: false, callbackTimeoutMs: 120_000, requestTimeoutMs: 60_000, dedicatedThread });
await ctx.listen(path);
process.stdout.write('listening\n');
// The allocation figure (bench/run.mjs allocFigure) asks for the heap and
// ArrayBuffer counters and the number of GCs so far over IPC.
if (process.send) {
  let gcs = 0;
  // Only collections free memory (and so spoil a window); incremental marking steps do not.
  const frees = new Set([constants.NODE_PERFORMANCE_GC_MINOR, constants.NODE_PERFORMANCE_GC_MAJOR]);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (frees.has(((e as unknown as { detail?: { kind?: number } }).detail)?.kind ?? -1)) gcs++;
  }).observe({ entryTypes: ['gc'] });
  process.on('message', (m: { heap?: boolean }) => {
    if (m.heap) process.send!({ used: v8.getHeapStatistics().used_heap_size, ab: process.memoryUsage().arrayBuffers, gcs });
  });
}
const stop = (): void => {
  void ctx.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
