// Our client for the benchmarks, as a long-lived worker process driven over
// an IPC channel by bench/run.mjs (so it is pinned like the other processes
// and pays its start-up once). Each request connects, measures, disconnects
// (our server serves one client at a time), and answers with the figures.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { VfioUserClient } from '../../src/client/index.js';
import { Command } from '../../src/protocol/commands.js';
import { DeviceState } from '../../src/protocol/constants.js';
import { forwardState } from '../../src/client/migrate.js';

const MEMCPY = fileURLToPath(new URL('../floor/bin/memcpy', import.meta.url));
const hr = (): bigint => process.hrtime.bigint();
const u64 = (v: number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
};

async function results(c: VfioUserClient): Promise<bigint[]> {
  const r = await c.regionRead(1, 0x100, 32);
  const dv = new DataView(r.buffer, r.byteOffset, 32);
  return [0, 8, 16, 24].map((o) => dv.getBigUint64(o, true));
}

type Req =
  | { op: 'rt'; path: string; kind: 'read' | 'write'; ops: number; count: number }
  | { op: 'irq'; path: string; n: number }
  | { op: 'dmaview'; path: string; size: number; chunk: number; passes: number }
  | { op: 'dmamsg'; path: string; bytes: number }
  | { op: 'mig'; src: string; dst: string; chunk: number };

async function roundTrips(r: Extract<Req, { op: 'rt' }>) {
  const c = await VfioUserClient.connect(r.path);
  try {
    const data = new Uint8Array(r.count).fill(7);
    const once = r.kind === 'read' ? () => c.regionRead(0, 0, r.count) : () => c.regionWrite(0, 0, data);
    const warm = Math.min(20000, Math.floor(r.ops / 10));
    for (let i = 0; i < warm; i++) await once();
    const t0 = hr();
    for (let i = 0; i < r.ops; i++) await once();
    return { ops: r.ops, ns: Number(hr() - t0) };
  } finally {
    await c.close();
  }
}

async function interrupts(r: Extract<Req, { op: 'irq' }>) {
  const c = await VfioUserClient.connect(r.path);
  try {
    await c.enableIrqEventfds('msi', 0, 1);
    await c.regionWrite(1, 0x00, u64(Math.floor(r.n / 10))); // warm-up
    await c.waitForIrq('msi', 0, { timeoutMs: 5000 });
    await c.regionWrite(1, 0x00, u64(r.n));
    const got = await c.waitForIrq('msi', 0, { timeoutMs: 5000 });
    const [ns] = await results(c);
    return { ops: r.n, ns: Number(ns), signalled: got };
  } finally {
    await c.close();
  }
}

/** Ours (device copies through DMA views) and the floor (C memcpy on the same memfd), alternated. */
async function dmaViews(r: Extract<Req, { op: 'dmaview' }>) {
  const c = await VfioUserClient.connect(r.path);
  try {
    const mem = await c.createGuestMemory({ iova: 0x1_0000_0000, size: r.size, useFd: true });
    mem.bytes.fill(1); // fault the pages in
    await c.regionWrite(1, 0x20, u64(r.passes));
    const ours: { readNs: number; writeNs: number; bytes: number } = { readNs: 0, writeNs: 0, bytes: 0 };
    await c.regionWrite(1, 0x08, u64(r.chunk)); // warm-up
    await c.regionWrite(1, 0x08, u64(r.chunk));
    const [, rns, wns, bytes] = await results(c);
    ours.readNs = Number(rns);
    ours.writeNs = Number(wns);
    ours.bytes = Number(bytes);
    const p = spawnSync(MEMCPY, [String(r.chunk), String(r.passes)], { stdio: ['ignore', 'pipe', 'inherit', mem.fd], encoding: 'utf8' });
    if (p.status !== 0) throw new Error(`memcpy floor failed: ${p.status}`);
    const floor = JSON.parse(p.stdout) as { readNs: number; writeNs: number; bytes: number };
    await mem.unmap();
    return { ours, floor };
  } finally {
    await c.close();
  }
}

async function dmaMessages(r: Extract<Req, { op: 'dmamsg' }>) {
  const c = await VfioUserClient.connect(r.path);
  try {
    const mem = await c.createGuestMemory({ iova: 0x1_0000_0000, size: r.bytes, useFd: false });
    mem.bytes.fill(1); // fault the pages in
    await c.regionWrite(1, 0x10, u64(Math.min(r.bytes, 8 * 1048576))); // warm-up
    await c.regionWrite(1, 0x10, u64(r.bytes));
    const [, rns, wns, bytes] = await results(c);
    return { readNs: Number(rns), writeNs: Number(wns), bytes: Number(bytes) };
  } finally {
    await c.close();
  }
}

async function migrate(r: Extract<Req, { op: 'mig' }>) {
  const src = await VfioUserClient.connect(r.src);
  const dst = await VfioUserClient.connect(r.dst);
  try {
    await src.setDeviceState(DeviceState.STOP_COPY);
    await dst.setDeviceState(DeviceState.RESUMING);
    let bytes = 0;
    let msgs = 0;
    const t0 = hr();
    // Our migration driver's forwarding loop: reads and writes pipelined.
    bytes = await forwardState(src, dst, r.chunk);
    msgs = Math.ceil(bytes / r.chunk);
    const ns = Number(hr() - t0);
    await dst.setDeviceState(DeviceState.RUNNING);
    await src.setDeviceState(DeviceState.RUNNING);
    return { ops: msgs, ns, bytes };
  } finally {
    await src.close();
    await dst.close();
  }
}

const ops: Record<Req['op'], (r: never) => Promise<unknown>> = {
  rt: roundTrips,
  irq: interrupts,
  dmaview: dmaViews,
  dmamsg: dmaMessages,
  mig: migrate,
};

process.on('message', (m: Req & { id: number }) => {
  (ops[m.op] as (r: Req) => Promise<unknown>)(m).then(
    (result) => process.send!({ id: m.id, result }),
    (e: Error) => process.send!({ id: m.id, error: e.stack ?? String(e) }),
  );
});
process.send!({ ready: true });
