// An interrupt that does not reach the client says why: TriggerResult names
// the reason (bus mastering off, INTx disabled, MSI / MSI-X disabled, masked,
// no eventfd, device stopped), and the device's logger warns once per vector
// and reason, and again for the next client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeviceState } from '../../src/protocol/constants.js';
import { PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX } from '../../src/pci/constants.js';
import type { DeviceDescription } from '../../src/server/device.js';
import type { Logger } from '../../src/util/logger.js';
import { startRig, type Rig } from '../client/rig.js';

interface Collected extends Logger {
  warnings: string[];
}

function collecting(): Collected {
  const warnings: string[] = [];
  return { warnings, debug: () => {}, info: () => {}, warn: (m) => void warnings.push(m), error: (m) => void warnings.push(m) };
}

function device(): DeviceDescription {
  const bar0 = new Uint8Array(0x2000);
  return {
    vendorId: 0x1234,
    deviceId: 0x5678,
    classCode: 0xff0000,
    irqs: { intx: 1, msi: 2 },
    capabilities: [
      { type: 'msi', vectors: 2 },
      { type: 'msix', tableSize: 2, tableBar: 0, tableOffset: 0x1000, pbaBar: 0, pbaOffset: 0x1800 },
    ],
    regions: { 0: { size: 0x2000, read: (o, n) => bar0.slice(o, o + n), write: (o, d) => void bar0.set(d, o) } },
    migration: { transition: () => {}, read: () => new Uint8Array(0), write: () => {} },
  };
}

const le16 = (v: number): Uint8Array => new Uint8Array([v & 0xff, v >> 8]);
const command = (rig: Rig, v: number): Promise<void> => rig.client.regionWrite(7, 4, le16(v));

test('TriggerResult names why an interrupt was not delivered, and the logger warns once per vector and reason', async () => {
  const log = collecting();
  const rig = await startRig('memory', { device: device(), server: { logger: log } });
  try {
    const { ctx, client } = rig;
    const warned = (re: RegExp): number => log.warnings.filter((w) => re.test(w)).length;

    // No eventfd: lost, warned once however often it happens.
    await command(rig, 0x0004);
    assert.equal(ctx.irq.trigger('msi', 0), 'no-eventfd');
    assert.equal(ctx.irq.trigger('msi', 0), 'no-eventfd');
    assert.equal(warned(/^interrupt msi\[0\] not delivered \(no-eventfd\): the client gave no eventfd for it/), 1);
    // Another vector is another warning.
    assert.equal(ctx.irq.trigger('msi', 1), 'no-eventfd');
    assert.equal(warned(/interrupt msi\[1\] not delivered \(no-eventfd\)/), 1);

    await client.enableIrqEventfds('msi', 0, 2);
    await client.enableIrqEventfds('msix', 0, 2);
    await client.enableIrqEventfds('intx', 0, 1);
    assert.equal(ctx.irq.trigger('msi', 0), 'delivered');

    // Bus Master Enable off.
    await command(rig, 0x0000);
    assert.equal(ctx.irq.trigger('msi', 0), 'bus-master-off');
    assert.equal(ctx.irq.trigger('msix', 1), 'bus-master-off');
    assert.equal(ctx.irq.trigger('msi', 0), 'bus-master-off');
    assert.equal(warned(/^interrupt msi\[0\] not delivered \(bus-master-off\): the guest has Bus Master Enable off/), 1);
    assert.equal(warned(/^interrupt msix\[1\] not delivered \(bus-master-off\)/), 1);

    // INTx Disable.
    await command(rig, 0x0404);
    assert.equal(ctx.irq.trigger('intx'), 'intx-disabled');
    assert.equal(warned(/^interrupt intx\[0\] not delivered \(intx-disabled\): the guest has INTx Disable set/), 1);
    await command(rig, 0x0004);

    // Masked: held, not lost, so not warned about.
    await client.maskIrq('msi', 1);
    assert.equal(ctx.irq.trigger('msi', 1), 'masked');
    assert.equal(warned(/msi\[1\].*masked/), 0);
    await client.unmaskIrq('msi', 1);
    assert.equal(await client.waitForIrq('msi', 1, { timeoutMs: 5000 }), 1, 'the masked one arrives at unmask');

    // MSI disabled by the guest in the capability (once it programs it).
    const msi = ctx.config.findCapability(PCI_CAP_ID_MSI)!;
    assert.equal(ctx.irq.trigger('msi', 0), 'delivered', 'a client that never wrote the capability gets MSI');
    await client.regionWrite(7, msi + 2, le16(0x0001)); // Enable
    assert.equal(ctx.irq.trigger('msi', 0), 'delivered');
    await client.regionWrite(7, msi + 2, le16(0x0000)); // Disable
    assert.equal(ctx.irq.trigger('msi', 0), 'msi-disabled');
    assert.equal(warned(/^interrupt msi\[0\] not delivered \(msi-disabled\): the guest has MSI disabled/), 1);

    // MSI-X disabled in Message Control (QEMU's way: it emulates the table itself).
    const msix = ctx.config.findCapability(PCI_CAP_ID_MSIX)!;
    assert.equal(ctx.irq.trigger('msix', 0), 'delivered');
    await client.regionWrite(7, msix + 2, le16(0x8000));
    assert.equal(ctx.irq.trigger('msix', 0), 'delivered');
    await client.regionWrite(7, msix + 2, le16(0x0000));
    assert.equal(ctx.irq.trigger('msix', 0), 'msix-disabled');
    // The table-driven path (a client that writes the table) names the same reason.
    await client.regionWrite(0, 0x1000 + 12, new Uint8Array(4));
    assert.equal(ctx.irq.trigger('msix', 0), 'msix-disabled');
    assert.equal(warned(/^interrupt msix\[0\] not delivered \(msix-disabled\)/), 1);
    await client.regionWrite(7, msix + 2, le16(0x8000));
    assert.equal(ctx.irq.trigger('msix', 0), 'delivered');
    await client.regionWrite(0, 0x1000 + 12, new Uint8Array([1, 0, 0, 0])); // vector 0 masked in the table
    assert.equal(ctx.irq.trigger('msix', 0), 'masked');

    // Stopped by migration.
    await client.setDeviceState(DeviceState.STOP);
    assert.equal(ctx.irq.trigger('intx'), 'device-stopped');
    assert.equal(ctx.irq.trigger('msi', 1), 'device-stopped');
    assert.equal(warned(/^interrupt intx\[0\] not delivered \(device-stopped\): the device is stopped by migration/), 1);
    await client.setDeviceState(DeviceState.RUNNING);
    assert.equal(ctx.irq.trigger('intx'), 'delivered');
  } finally {
    await rig.close();
  }
});

test('the warnings start afresh for the next client', async () => {
  const log = collecting();
  const rig = await startRig('socket', { device: device(), server: { logger: log } });
  try {
    assert.equal(rig.ctx.irq.trigger('msi', 0), 'bus-master-off');
    assert.equal(rig.ctx.irq.trigger('msi', 0), 'bus-master-off');
    await rig.client.close();
    await rig.ctx.waitForDisconnect();
    assert.equal(rig.ctx.irq.trigger('msi', 0), 'bus-master-off');
    assert.equal(log.warnings.filter((w) => /msi\[0\] not delivered \(bus-master-off\)/.test(w)).length, 2);
  } finally {
    await rig.close();
  }
});
