import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RemoteError } from '../../src/protocol/errors.js';
import { Errno } from '../../src/protocol/errno.js';
import { DeviceInfoFlags, RegionInfoFlags } from '../../src/protocol/constants.js';
import { ClientError, ClientErrorCode, type IrqEvent } from '../../src/client/index.js';
import { enableBusMaster, startRig, TRANSPORTS } from './rig.js';

for (const kind of TRANSPORTS) {
  test(`${kind}: negotiates and reports device, regions and IRQs`, async () => {
    const rig = await startRig(kind);
    const { client } = rig;
    try {
      assert.equal(client.version.major, 0);
      assert.equal(client.version.minor, 2);
      assert.equal(client.serverCaps.maxMsgFds, 16);
      assert.equal(client.serverCaps.maxDataXferSize, 1048576);
      assert.equal(client.serverCaps.writeMultiple, true);
      const info = await client.getDeviceInfo();
      assert.equal(info.flags, DeviceInfoFlags.RESET | DeviceInfoFlags.PCI);
      assert.equal(info.numRegions, 9);
      assert.equal(info.numIrqs, 5);

      const r1 = await client.getRegionInfo(1);
      assert.equal(r1.size, 0x4000n);
      assert.equal(r1.flags, RegionInfoFlags.READ | RegionInfoFlags.WRITE | RegionInfoFlags.MMAP | RegionInfoFlags.CAPS);
      assert.equal(r1.argsz, 32 + 16 + 2 * 16, 'retried with the argsz the server asked for');
      assert.deepEqual(r1.mmapAreas, [
        { offset: 0n, size: 0x1000n },
        { offset: 0x2000n, size: 0x2000n },
      ]);
      assert.equal(r1.fd, null, 'fd closed unless keepFd');
      const r0 = await client.getRegionInfo(0);
      assert.equal(r0.flags, RegionInfoFlags.READ | RegionInfoFlags.WRITE);
      assert.deepEqual(r0.mmapAreas, []);
      const cfg = await client.getRegionInfo(7);
      assert.equal(cfg.size, 256n);
      const r1fd = await client.getRegionInfo(1, { keepFd: true });
      assert.ok(typeof r1fd.fd === 'number' && r1fd.fd >= 0);
      (await import('../../src/native/binding.js')).native.close(r1fd.fd!);

      const id = await client.regionRead(7, 0, 4);
      assert.deepEqual([...id], [0xad, 0xde, 0xef, 0xbe]);
      assert.equal((await client.getIrqInfo('msi')).count, 4);
      assert.equal((await client.getIrqInfo('intx')).count, 1);
      assert.equal((await client.getIrqInfo(2)).count, 0);

      await assert.rejects(client.getRegionInfo(99), (e: unknown) => e instanceof RemoteError && e.errno === Errno.EINVAL);
      await assert.rejects(client.regionRead(0xdeadbeef, 0, 4), (e: unknown) => e instanceof RemoteError && e.errno === Errno.EINVAL);
      await assert.rejects(client.regionRead(0, 0xff0, 0x20), (e: unknown) => e instanceof RemoteError && e.errno === Errno.EINVAL);
    } finally {
      await rig.close();
    }
  });

  test(`${kind}: region reads and writes, posted writes, write-multi, reset`, async () => {
    let resets = 0;
    const { sampleDevice } = await import('./rig.js');
    const rig = await startRig(kind, { device: sampleDevice({ reset: () => void resets++ }) });
    const { client } = rig;
    try {
      const big = new Uint8Array(0x1000).map((_, i) => (i * 7) & 0xff);
      await client.regionWrite(0, 0, big);
      assert.deepEqual(await client.regionRead(0, 0, 0x1000), big);
      client.regionWritePosted(0, 0x10, new Uint8Array([1, 2, 3, 4]));
      // Commands are handled in order: the read sees the posted write.
      assert.deepEqual([...(await client.regionRead(0, 0x10, 4))], [1, 2, 3, 4]);
      const n = await client.regionWriteMulti([
        { region: 0, offset: 0x20, data: new Uint8Array([9, 9]) },
        { region: 0, offset: 0x28, data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) },
      ]);
      assert.equal(n, 2n);
      assert.equal(await client.regionWriteMulti([{ region: 0, offset: 0x30, data: new Uint8Array([0x77]) }], { noReply: true }), null);
      const back = await client.regionRead(0, 0x20, 0x11);
      assert.deepEqual([...back], [9, 9, 0x20 * 7 + 2 * 7 & 0xff, ...[...big.subarray(0x23, 0x28)], 1, 2, 3, 4, 5, 6, 7, 8, 0x77]);
      await assert.rejects(
        client.regionWriteMulti([{ region: 0, offset: 0, data: new Uint8Array(9) }]),
        (e: unknown) => e instanceof ClientError && e.code === ClientErrorCode.INVALID_ARG,
      );
      await client.reset();
      assert.equal(resets, 1);
    } finally {
      await rig.close();
    }
  });

  test(`${kind}: interrupts fired by the device arrive on the client's eventfds`, async () => {
    const rig = await startRig(kind);
    const { client, ctx } = rig;
    try {
      const events: IrqEvent[] = [];
      client.on('irq', (e) => events.push(e));
      const [intxFd] = await client.enableIrqEventfds('intx');
      assert.ok(intxFd !== undefined && intxFd >= 0);
      assert.ok(ctx.irq.hasEventfd('intx'));
      assert.equal(ctx.irq.trigger('intx'), 'delivered');
      assert.equal(await client.waitForIrq('intx', 0, { timeoutMs: 2000 }), 1);
      assert.deepEqual(events.map((e) => [e.type, e.vector, e.count, e.via]), [['intx', 0, 1, 'eventfd']]);

      const msiFds = await client.enableIrqEventfds('msi', 0, 4);
      assert.equal(msiFds.length, 4);
      // Bus Master Enable is off: MSI is suppressed, as on hardware.
      assert.equal(ctx.irq.trigger('msi', 2), 'bus-master-off');
      await enableBusMaster(client);
      assert.equal(ctx.irq.trigger('msi', 2), 'delivered');
      assert.equal(await client.waitForIrq('msi', 2, { timeoutMs: 2000 }), 1);
      // Nothing arrived on vector 1: a wait times out with a stable code.
      await assert.rejects(client.waitForIrq('msi', 1, { timeoutMs: 50 }), (e: unknown) => e instanceof ClientError && e.code === ClientErrorCode.IRQ_TIMEOUT);
      // Signals before the wait are counted, not lost.
      ctx.irq.trigger('msi', 3);
      ctx.irq.trigger('msi', 3);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(await client.waitForIrq('msi', 3, { timeoutMs: 2000 }), 2);

      // Masked vectors become pending and fire on unmask.
      await client.maskIrq('msi', 0);
      assert.equal(ctx.irq.trigger('msi', 0), 'masked');
      await assert.rejects(client.waitForIrq('msi', 0, { timeoutMs: 50 }));
      await client.unmaskIrq('msi', 0);
      assert.equal(await client.waitForIrq('msi', 0, { timeoutMs: 2000 }), 1);

      // Loopback trigger by the client.
      await client.triggerIrq('msi', 1);
      assert.equal(await client.waitForIrq('msi', 1, { timeoutMs: 2000 }), 1);

      await client.disableIrqs('msi');
      assert.equal(ctx.irq.hasEventfd('msi', 2), false);
      assert.equal(ctx.irq.trigger('msi', 2), 'no-eventfd');
    } finally {
      await rig.close();
    }
  });

  test(`${kind}: bytes written through a region's mmap are seen by the device and vice versa`, async () => {
    const rig = await startRig(kind);
    const { client, ctx } = rig;
    try {
      const map = await client.mapRegion(1);
      assert.deepEqual(map.areas.map((a) => [a.offset, a.size, a.bytes.length]), [
        [0, 0x1000, 0x1000],
        [0x2000, 0x2000, 0x2000],
      ]);
      const mem = ctx.region(1).memory!;
      map.areas[0]!.bytes.set([1, 2, 3, 4], 0x10);
      assert.deepEqual([...mem.subarray(0x10, 0x14)], [1, 2, 3, 4]);
      assert.deepEqual([...(await client.regionRead(1, 0x10, 4))], [1, 2, 3, 4]);
      mem[0x2100] = 0x5a;
      assert.equal(map.areaAt(0x2100)!.bytes[0x100], 0x5a);
      assert.equal(map.areaAt(0x1000), undefined, 'the hole between areas is not mapped');
      await client.regionWrite(1, 0x3000, new Uint8Array([0xaa, 0xbb]));
      assert.deepEqual([...map.areas[1]!.bytes.subarray(0x1000, 0x1002)], [0xaa, 0xbb]);
      map.unmap();
      assert.equal(map.areas[0]!.bytes.length, 0);
      await assert.rejects(client.mapRegion(0), (e: unknown) => e instanceof ClientError && e.code === ClientErrorCode.NOT_MAPPABLE);
      // Left mapped: close() must unmap it.
      const again = await client.mapRegion(1);
      await rig.close();
      assert.equal(again.areas[0]!.bytes.length, 0);
    } catch (e) {
      await rig.close().catch(() => {});
      throw e;
    }
  });
}
