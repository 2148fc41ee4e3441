// Interrupts into BLOCKING eventfds (libvfio-user's client makes its irqfds
// blocking; the flag is the client's, not ours to change). A write blocks
// when the client has filled the counter to 2^64-2, and a client can fill it
// between any check of ours and the write. Such writes therefore happen on
// the addon's writer thread: whatever the client does, the event loop keeps
// running. A test hook makes that race certain.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { read } from 'node:fs';
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { SetIrqsFlags } from '../../src/protocol/constants.js';
import { encodeDeviceInfoRequest } from '../../src/protocol/device-info.js';
import { encodeSetIrqsRequest } from '../../src/protocol/set-irqs.js';
import { startRig } from '../helpers/raw-client.js';

/**
 * Reads the counter in libuv's thread pool (a blocking read, as the client
 * would make it), so the loop is free meanwhile. A Poller would do, but
 * libuv switches a polled fd to non-blocking, which changes the client's fd.
 */
function whenReadable(fd: number): Promise<bigint> {
  return new Promise((resolve, reject) => {
    read(fd, Buffer.alloc(8), 0, 8, null, (err, n, buf) => (err ? reject(err) : n !== 8 ? reject(new Error(`read ${n}`)) : resolve(buf.readBigUInt64LE(0))));
  });
}

test('an interrupt into a blocking eventfd whose counter a client fills never blocks the event loop', { timeout: 20_000 }, async () => {
  const rig = await startRig('socket', { vendorId: 1, deviceId: 2, irqs: { msi: 2 } }, { requireBusMaster: false });
  const efd = native.eventfd(0, 0); // blocking, as libvfio-user's client makes them
  const mine = native.dup(efd);
  const plain = native.eventfd(0, native.EFD_NONBLOCK);
  const plainMine = native.dup(plain);
  try {
    await rig.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index: 1, start: 0, count: 2 }), [efd, plain]);
    assert.equal(native.isNonBlocking(mine), false, 'the client keeps its blocking eventfd blocking');

    // Ordinary case: delivered to both kinds.
    assert.equal(rig.ctx.irq.trigger('msi', 0), 'delivered');
    assert.equal(rig.ctx.irq.trigger('msi', 1), 'delivered');
    assert.equal(await whenReadable(mine), 1n);
    assert.equal(native.eventfdRead(plainMine), 1n, 'a non-blocking eventfd is written at once');

    // The race: the counter is filled right before our write, which blocks.
    native.eventfdTestFill(true);
    assert.equal(rig.ctx.irq.trigger('msi', 0), 'delivered');
    // The loop runs on: immediates, timers, and commands from the client.
    await immediate();
    await sleep(50);
    const info = await rig.call(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest({ argsz: 16 }));
    assert.equal(info.payload.length, 16);
    // Other interrupts still go out meanwhile (the non-blocking fd is not behind the stalled write).
    assert.equal(rig.ctx.irq.trigger('msi', 1), 'delivered');
    assert.equal(native.eventfdRead(plainMine), 1n);
    native.eventfdTestFill(false);
    // The client reads the full counter; the stalled write then completes.
    assert.equal(await whenReadable(mine), 0xfffffffffffffffen);
    assert.equal(await whenReadable(mine), 1n, 'the interrupt arrives once the client made room');
  } finally {
    native.eventfdTestFill(false);
    native.close(mine);
    native.close(plainMine);
    await rig.close();
  }
});
