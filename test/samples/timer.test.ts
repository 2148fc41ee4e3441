// The timer sample's BAR0: a time in the past fires at once, a time beyond
// what one Node timer can wait (2^31-1 ms, 24.8 days) does not fire early and
// raises no TimeoutOverflowWarning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { SetIrqsFlags } from '../../src/protocol/constants.js';
import { encodeRegionWriteRequest } from '../../src/protocol/region-access.js';
import { encodeSetIrqsRequest } from '../../src/protocol/set-irqs.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import { createTimerDevice } from '../../samples/timer-device.js';
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
