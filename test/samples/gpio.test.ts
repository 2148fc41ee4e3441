import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { SetIrqsFlags } from '../../src/protocol/constants.js';
import { encodeSetIrqsRequest } from '../../src/protocol/set-irqs.js';
import { decodeRegionReadReply, encodeRegionReadRequest, encodeRegionWriteRequest } from '../../src/protocol/region-access.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';
import { negotiate } from '../helpers/raw-client.js';
import { createGpioDevice, GPIO_BAR, REG_IN0_7, REG_IN8_15, REG_IRQ_CTL, REG_IRQ_STATUS, REG_OUT0_7, REG_OUT8_15 } from '../../samples/gpio-device.js';

test('PCI-IDIO-16: loopback inputs, change-of-state INTx, clear and disable', async () => {
  const dev = createGpioDevice();
  const [a, b] = createMemoryPair({ dupFd: native.dup, closeFd: native.close });
  dev.ctx.attach(b);
  const ep = new Endpoint(a);
  await negotiate(ep);
  const rd = async (reg: number) => decodeRegionReadReply((await ep.request(Command.REGION_READ, encodeRegionReadRequest({ offset: BigInt(reg), region: GPIO_BAR, count: 1 }))).payload).data[0]!;
  const wr = (reg: number, v: number) => ep.request(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: BigInt(reg), region: GPIO_BAR, count: 1, data: new Uint8Array([v]) }));
  const efd = native.eventfd(0, native.EFD_NONBLOCK);
  await ep.request(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index: 0, start: 0, count: 1 }), { fds: [efd] });
  const unmask = () => ep.request(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_UNMASK, index: 0, start: 0, count: 1 }));
  try {
    // Interrupts off: outputs loop back to inputs, no interrupt.
    await wr(REG_OUT0_7, 0xa5);
    await wr(REG_OUT8_15, 0x3c);
    assert.deepEqual([await rd(REG_OUT0_7), await rd(REG_OUT8_15), await rd(REG_IN0_7), await rd(REG_IN8_15)], [0xa5, 0x3c, 0xa5, 0x3c]);
    assert.equal(native.eventfdRead(efd), -1n);
    assert.equal(await rd(REG_IRQ_STATUS), 0);
    // Enable (a read of IRQ_CTL), change an input: status latched, INTx fires.
    await rd(REG_IRQ_CTL);
    await wr(REG_OUT0_7, 0xa4);
    assert.equal(native.eventfdRead(efd), 1n);
    assert.equal(await rd(REG_IRQ_STATUS), 0x5);
    // Still asserted: an unmask (QEMU's EOI) fires it again.
    await unmask();
    assert.equal(native.eventfdRead(efd), 1n);
    // Clear interrupt (write to offset 1): deasserted, next unmask is quiet.
    await wr(REG_IN0_7, 0);
    assert.equal(await rd(REG_IRQ_STATUS), 0);
    await unmask();
    assert.equal(native.eventfdRead(efd), -1n);
    // A change in the upper byte sets bit 1.
    await wr(REG_OUT8_15, 0x3d);
    assert.equal(native.eventfdRead(efd), 1n);
    assert.equal(await rd(REG_IRQ_STATUS), 0x6);
    // Disable (write to offset 2): cleared and no further interrupts.
    await wr(REG_IRQ_CTL, 0);
    await unmask();
    await wr(REG_OUT0_7, 0x00);
    assert.equal(native.eventfdRead(efd), -1n);
    assert.equal(dev.stats.interrupts, 2);
    assert.ok(dev.stats.barReads > 5 && dev.stats.barWrites > 5);
  } finally {
    native.close(efd);
    await ep.close();
    await dev.ctx.close();
  }
});
