// The timer sample's BAR0: a time in the past fires at once, a time beyond
// what one Node timer can wait (2^31-1 ms, 24.8 days) does not fire early and
// raises no TimeoutOverflowWarning. Its migration restore holds one state
// however much a client streams into RESUMING.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { SetIrqsFlags } from '../../src/protocol/constants.js';
import { encodeRegionWriteRequest } from '../../src/protocol/region-access.js';
import { encodeSetIrqsRequest } from '../../src/protocol/set-irqs.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import { BAR1_SIZE, createTimerDevice } from '../../samples/timer-device.js';
import { negotiate, settle } from '../helpers/raw-client.js';

const u64le = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};

test('timer sample: a past time fires now; one 30 days or 2^62 s ahead does not fire early', { timeout: 20000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-timer-'));
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  process.on('warning', onWarning);
  let fired = 0;
  const dev = createTimerDevice({ onDmaDone: () => fired++ });
  const path = join(dir, 's');
  await dev.ctx.listen(path);
  const ep = new Endpoint(new SocketTransport(native.connect(path)));
  const efd = native.eventfd(0, native.EFD_NONBLOCK);
  try {
    await negotiate(ep);
    await ep.request(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index: 0, start: 0, count: 1 }), { fds: [efd] });
    const arm = (t: bigint) => ep.request(Command.REGION_WRITE, encodeRegionWriteRequest({ region: 0, offset: 0n, count: 8, data: u64le(t) }));
    const now = BigInt(Math.floor(Date.now() / 1000));
    // Control: a time already past fires (INTx on the eventfd), so the checks below can see a firing.
    await arm(now - 1n);
    for (let i = 0; i < 200 && fired === 0; i++) await settle(10);
    assert.equal(fired, 1, 'a past time fires');
    assert.equal(native.eventfdRead(efd), 1n);
    // Unmask INTx (auto-masked when it fired) so a second firing would reach the eventfd.
    await ep.request(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_UNMASK, index: 0, start: 0, count: 1 }));
    for (const ahead of [30n * 86400n, 1n << 62n]) {
      await arm(now + ahead);
      await settle(200);
      assert.equal(fired, 1, `a time ${ahead} s ahead did not fire`);
      assert.equal(native.eventfdRead(efd), -1n, `no INTx for a time ${ahead} s ahead`);
    }
    assert.deepEqual(warnings.map((w) => w.name), [], 'no process warnings (TimeoutOverflowWarning)');
  } finally {
    process.off('warning', onWarning);
    dev.cancelTimer();
    await ep.close();
    await dev.ctx.close();
    native.close(efd);
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Full garbage collections (the flag is set at run time, so no --expose-gc is
 * needed), with turns of the event loop between them for backing stores that
 * are freed after the collection.
 */
async function collect(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 4; i++) {
    gc();
    await settle(10);
  }
}

const u32s = (...v: number[]): Uint8Array => new Uint8Array(new Uint32Array(v).buffer);

test('timer sample: 32 MiB streamed into RESUMING is not held; the last BAR1 + BAR0 are restored', { timeout: 60000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-timer-'));
  const dev = createTimerDevice();
  const path = join(dir, 's');
  await dev.ctx.listen(path);
  const ep = new Endpoint(new SocketTransport(native.connect(path)));
  try {
    await negotiate(ep);
    const setState = (s: number) => ep.request(Command.DEVICE_FEATURE, new Uint8Array([...u32s(16, 0x20002), ...u32s(s, 0xffffffff)]));
    const migWrite = (data: Uint8Array) => {
      const p = new Uint8Array(8 + data.length);
      p.set(u32s(8 + data.length, data.length));
      p.set(data, 8);
      return ep.request(Command.MIG_DATA_WRITE, p);
    };
    await setState(4); // RESUMING
    const chunk = new Uint8Array(1 << 20).fill(0x11); // 64 copies of BAR1
    await migWrite(chunk); // the transport's buffers are at their size from here
    await collect();
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 32; i++) await migWrite(chunk);
    const last = new Uint8Array(BAR1_SIZE + 8).fill(0x5a);
    new DataView(last.buffer).setBigUint64(BAR1_SIZE, 12345n, true);
    await migWrite(last);
    await collect();
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 8 * 1048576, `device holds ${(grown / 1048576).toFixed(1)} MiB of a 33 MiB stream`);
    await setState(1); // STOP: restore
    assert.deepEqual(Array.from(new Set(dev.ctx.region(1).memory!)), [0x5a]);
    assert.equal(dev.bar0, 12345n);
  } finally {
    await ep.close();
    await dev.ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
