// Disconnect at every point of libvfio-user's sample client sequence (source
// side, through migration, and the destination side): between any two
// messages and in the middle of one. After each, the server is still up,
// accepts the next client, has dropped the client's DMA maps and interrupt
// fds (fd count back to baseline), and keeps device state as the spec says:
// BAR contents stay, a pre-copy session is abandoned (back to RUNNING),
// other migration states stay until the next client resets the device.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { countOpenFds } from '../../src/native/fds.js';
import { Command } from '../../src/protocol/commands.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import { createTimerDevice, BAR1_SIZE } from '../../samples/timer-device.js';
import { concat, frame, versionPayload } from '../fuzz/gen.js';

const PAGE = 4096;
const u32s = (...v: number[]): Uint8Array => new Uint8Array(new Uint32Array(v.map((x) => x >>> 0)).buffer);
const u64s = (...v: bigint[]): Uint8Array => new Uint8Array(new BigUint64Array(v).buffer);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const state = (s: number): Uint8Array => concat(u32s(16, 0x20002), u32s(s, 0xffffffff));

interface Step {
  cmd: number;
  payload: Uint8Array;
  fd?: 'guest' | 'eventfd';
  /** Migration state after this step (source side). */
  label: string;
}

function sourceSteps(n: number): Step[] {
  const s: Step[] = [{ cmd: Command.VERSION, payload: versionPayload(null, '{"capabilities":{"max_msg_fds":32,"max_data_xfer_size":1024}}'), label: 'version' }];
  s.push({ cmd: Command.REGION_READ, payload: concat(u64s(0n), u32s(0xdeadbeef, 4)), label: 'bad region' });
  s.push({ cmd: Command.DEVICE_GET_INFO, payload: u32s(16, 0, 0, 0), label: 'info' });
  for (let i = 0; i < 9; i++) s.push({ cmd: Command.DEVICE_GET_REGION_INFO, payload: u32s(i === 1 ? 80 : 32, 0, i, 0, 0, 0, 0, 0), label: `region ${i}` });
  s.push({ cmd: Command.REGION_READ, payload: concat(u64s(0n), u32s(7, 64)), label: 'config' });
  s.push({ cmd: Command.DEVICE_RESET, payload: new Uint8Array(0), label: 'reset' });
  for (let i = 0; i < 2 * n; i++) s.push({ cmd: Command.DMA_MAP, payload: concat(u32s(32, 3), u64s(BigInt(i * PAGE), BigInt(i * PAGE), BigInt(PAGE))), fd: 'guest', label: `map ${i}` });
  for (let i = 0; i < 5; i++) s.push({ cmd: Command.DEVICE_GET_IRQ_INFO, payload: u32s(16, 0, i, 0), label: `irq ${i}` });
  s.push({ cmd: Command.DEVICE_SET_IRQS, payload: u32s(20, 0x24, 0, 0, 1), fd: 'eventfd', label: 'set irqs' });
  s.push({ cmd: Command.DEVICE_FEATURE, payload: concat(u32s(24, 0x20006), u64s(BigInt(PAGE)), u32s(0, 0)), label: 'log start' });
  // A timer an hour ahead: no interrupt fires during the test.
  const later = BigInt(Math.floor(Date.now() / 1000) + 3600);
  s.push({ cmd: Command.REGION_WRITE, payload: concat(u64s(0n), u32s(0, 8), u64s(later)), label: 'bar0' });
  for (let i = 0; i < 2 * n; i++) s.push({ cmd: Command.DEVICE_FEATURE, payload: concat(u32s(40, 0x10008), u64s(BigInt(i * PAGE), BigInt(PAGE), BigInt(PAGE))), label: `report ${i}` });
  s.push({ cmd: Command.DEVICE_FEATURE, payload: concat(u32s(24, 0x20007), u64s(BigInt(PAGE)), u32s(0, 0)), label: 'log stop' });
  for (let i = 0; i < n; i++) s.push({ cmd: Command.DMA_UNMAP, payload: concat(u32s(24, 0), u64s(BigInt(i * PAGE), BigInt(PAGE))), label: `unmap ${i}` });
  s.push({ cmd: Command.DEVICE_FEATURE, payload: state(6), label: 'PRE_COPY' });
  for (let i = 0; i < 5; i++) {
    s.push({ cmd: Command.REGION_WRITE, payload: concat(u64s(0n), u32s(1, 16), new Uint8Array(16).fill(i + 1)), label: 'guest write' });
    s.push({ cmd: Command.MIG_DATA_READ, payload: u32s(1032, 1024), label: 'pre-copy read' });
  }
  s.push({ cmd: Command.DEVICE_FEATURE, payload: state(3), label: 'STOP_COPY' });
  for (let i = 0; i < 18; i++) s.push({ cmd: Command.MIG_DATA_READ, payload: u32s(1032, 1024), label: 'stop-copy read' });
  s.push({ cmd: Command.DEVICE_FEATURE, payload: state(1), label: 'STOP' });
  return s;
}

function destSteps(): Step[] {
  const s: Step[] = [{ cmd: Command.VERSION, payload: versionPayload(null), label: 'version' }];
  s.push({ cmd: Command.DEVICE_FEATURE, payload: state(4), label: 'RESUMING' });
  const stream = new Uint8Array(BAR1_SIZE + 8).fill(0x5a);
  for (let off = 0; off < stream.length; off += 1024) {
    const c = stream.subarray(off, off + 1024);
    s.push({ cmd: Command.MIG_DATA_WRITE, payload: concat(u32s(8 + c.length, c.length), c), label: 'data write' });
  }
  s.push({ cmd: Command.DEVICE_FEATURE, payload: state(1), label: 'STOP (restore)' });
  s.push({ cmd: Command.DEVICE_FEATURE, payload: state(2), label: 'RUNNING' });
  s.push({ cmd: Command.DMA_MAP, payload: concat(u32s(32, 3), u64s(0n, 0n, BigInt(PAGE))), fd: 'guest', label: 'map' });
  s.push({ cmd: Command.DEVICE_SET_IRQS, payload: u32s(20, 0x24, 0, 0, 1), fd: 'eventfd', label: 'set irqs' });
  return s;
}

async function runCuts(steps: Step[], side: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-disc-'));
  const dev = createTimerDevice();
  const path = join(dir, 's');
  await dev.ctx.listen(path);
  const guest = native.memfdCreate('guest', true);
  native.ftruncate(guest, 64 * PAGE);
  const base = countOpenFds();
  try {
    // Cut k: the first k steps complete, then (when mid) half of step k, then the client vanishes.
    for (let k = 0; k <= steps.length; k++) {
      for (const mid of k < steps.length ? [false, true] : [false]) {
        const accepted = new Promise<void>((r) => dev.ctx.once('connect', () => r()));
        const ep = new Endpoint(new SocketTransport(native.connect(path)), { requestTimeoutMs: 5000 });
        await accepted;
        for (let i = 0; i < k; i++) {
          const st = steps[i]!;
          const fd = st.fd === 'guest' ? guest : st.fd === 'eventfd' ? native.eventfd(0, native.EFD_NONBLOCK) : -1;
          try {
            const r = await ep.request(st.cmd, st.payload, fd >= 0 ? { fds: [fd] } : {}).catch((e: Error) => e);
            if (!(r instanceof Error)) ep.transport.releaseFds(r.fds);
            else if (st.label !== 'bad region' && !(side === 'dest' && st.label.startsWith('STOP'))) assert.fail(`${side} step ${i} (${st.label}) failed: ${r.message}`);
          } finally {
            if (st.fd === 'eventfd') native.close(fd);
          }
        }
        if (mid) {
          const st = steps[k]!;
          const m = frame(st.cmd, st.payload, 0x777);
          const half = Math.max(1, m.length >> 1);
          const fd = st.fd === 'guest' ? guest : -1;
          ep.transport.send(m.subarray(0, half), fd >= 0 ? [fd] : []);
          await sleep(1);
        }
        const bar1Before = dev.ctx.region(1).memory!.slice(0, 16);
        const gone = dev.ctx.waitForDisconnect();
        await ep.close({ timeoutMs: 100 });
        await gone;
        const where = `${side} cut ${k}${mid ? ' (mid-message)' : ''} after ${k > 0 ? steps[k - 1]!.label : 'nothing'}`;
        assert.equal(dev.ctx.connected, false, where);
        assert.equal(dev.ctx.dmaTable.count, 0, `${where}: DMA maps dropped`);
        assert.equal(dev.ctx.irq.hasEventfd('intx'), false, `${where}: INTx eventfd dropped`);
        assert.equal(countOpenFds(), base, `${where}: fds back to baseline`);
        assert.deepEqual(dev.ctx.region(1).memory!.slice(0, 16), bar1Before, `${where}: BAR1 kept`);
        const mig = dev.ctx.migration.stateName;
        assert.notEqual(mig, 'PRE_COPY', `${where}: an abandoned pre-copy returns to RUNNING`);
        // The next client is accepted and, after a reset, finds a RUNNING device.
        const next = new Endpoint(new SocketTransport(native.connect(path)), { requestTimeoutMs: 5000 });
        await next.request(Command.VERSION, versionPayload(null));
        const got = await next.request(Command.DEVICE_FEATURE, u32s(16, 2 | (1 << 16)));
        const seen = new DataView(got.payload.buffer, got.payload.byteOffset).getUint32(8, true);
        assert.equal(seen, dev.ctx.migration.state, `${where}: state kept for the next client`);
        await next.request(Command.DEVICE_RESET);
        assert.equal(dev.ctx.migration.stateName, 'RUNNING');
        const g2 = dev.ctx.waitForDisconnect();
        await next.close();
        await g2;
      }
    }
  } finally {
    dev.cancelTimer();
    native.close(guest);
    await dev.ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('disconnect at every point of the sample client sequence, source side (through PRE_COPY, STOP_COPY, STOP)', { timeout: 300000 }, async () => {
  await runCuts(sourceSteps(4), 'source');
});

test('disconnect at every point of the destination side (RESUMING, data, STOP, RUNNING)', { timeout: 300000 }, async () => {
  await runCuts(destSteps(), 'dest');
});
