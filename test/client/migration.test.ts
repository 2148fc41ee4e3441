import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeviceState, MigrationFlags, DeviceFeature } from '../../src/protocol/constants.js';
import { bitmapSetBits } from '../../src/protocol/dirty-bitmap.js';
import { Errno } from '../../src/protocol/errno.js';
import { RemoteError } from '../../src/protocol/errors.js';
import type { MigrationStateName } from '../../src/server/device.js';
import { enableBusMaster, randomBytes, sampleDevice, startRig, TRANSPORTS } from './rig.js';

const IOVA = 0x40_0000;

function migratingDevice(state: Uint8Array, hops: string[], received: Uint8Array[]) {
  let cursor = 0;
  return sampleDevice({
    migration: {
      transition: (to: MigrationStateName, from: MigrationStateName) => {
        hops.push(`${from}->${to}`);
        if (to === 'STOP_COPY' || to === 'PRE_COPY') cursor = 0;
      },
      read: (max: number) => {
        const out = state.slice(cursor, cursor + max);
        cursor += out.length;
        return out;
      },
      write: (d: Uint8Array) => {
        received.push(d);
      },
    },
  });
}

for (const kind of TRANSPORTS) {
  test(`${kind}: migration state machine and data stream through the typed helpers`, async () => {
    const state = randomBytes(10000, 11);
    const hops: string[] = [];
    const received: Uint8Array[] = [];
    const rig = await startRig(kind, { device: migratingDevice(state, hops, received), server: { maxDataXferSize: 4096 } });
    const { client } = rig;
    try {
      const flags = await client.getMigrationFlags();
      assert.ok(flags & MigrationFlags.STOP_COPY);
      assert.ok(flags & MigrationFlags.PRE_COPY);
      assert.equal(await client.probeFeature(DeviceFeature.MIG_DEVICE_STATE), true);
      assert.equal(await client.getDeviceState(), DeviceState.RUNNING);
      await client.setDeviceState(DeviceState.STOP_COPY);
      assert.deepEqual(hops, ['RUNNING->STOP', 'STOP->STOP_COPY']);
      assert.equal(await client.getDeviceState(), DeviceState.STOP_COPY);
      const chunks: Uint8Array[] = [];
      for (;;) {
        const r = await client.migDataRead(4096);
        if (r.size === 0) break;
        assert.equal(r.data.length, r.size);
        chunks.push(r.data);
      }
      assert.deepEqual(Buffer.concat(chunks), Buffer.from(state));
      await assert.rejects(client.migDataRead(8192), /outside/);
      await client.setDeviceState(DeviceState.RESUMING);
      await client.migDataWrite(state);
      // Split at the server's max_data_xfer_size of data per message, no less.
      assert.deepEqual(received.map((d) => d.length), [4096, 4096, 1808]);
      assert.deepEqual(Buffer.concat(received), Buffer.from(state));
      received.length = 0;
      await client.migDataWrite(state.subarray(0, 4096));
      assert.deepEqual(received.map((d) => d.length), [4096], 'a whole chunk goes in one message');
      await client.setDeviceState(DeviceState.RUNNING);
      assert.equal(await client.getDeviceState(), DeviceState.RUNNING);
      await assert.rejects(client.migDataWrite(new Uint8Array(4)), (e: unknown) => e instanceof RemoteError && e.errno === Errno.EINVAL);
    } finally {
      await rig.close();
    }
  });

  test(`${kind}: dirty logging: server report for fd memory, client tracking for message memory`, async () => {
    const rig = await startRig(kind, { device: migratingDevice(new Uint8Array(0), [], []) });
    const { client, ctx } = rig;
    try {
      await enableBusMaster(client);
      const direct = await client.createGuestMemory({ iova: IOVA, size: 0x8000, useFd: true });
      const msgs = await client.createGuestMemory({ iova: IOVA + 0x8000, size: 0x8000, useFd: false });
      await client.startDirtyLogging(4096);
      ctx.dma.writeSync(IOVA + 0x2000, new Uint8Array(16));
      ctx.dma.writeSync(IOVA + 0x5ff0, new Uint8Array(32));
      const r = await client.dirtyReport(IOVA, 0x8000, 4096);
      assert.equal(r.bitmap.length, 8);
      assert.deepEqual(bitmapSetBits(r.bitmap), [2, 5, 6]);
      assert.deepEqual(bitmapSetBits((await client.dirtyReport(IOVA, 0x8000)).bitmap), [], 'read-and-clear');
      await ctx.dma.write(IOVA + 0x8000 + 0x3000, new Uint8Array(10));
      ctx.dma.writeSync(IOVA + 0x7000, new Uint8Array(1));
      assert.deepEqual(bitmapSetBits(await client.collectDirty(msgs)), [3]);
      assert.deepEqual(bitmapSetBits(await client.collectDirty(direct)), [7]);
      assert.deepEqual(bitmapSetBits(await client.collectDirty(direct)), []);
      await client.stopDirtyLogging();
      await assert.rejects(client.dirtyReport(IOVA, 0x8000), (e: unknown) => e instanceof RemoteError && e.errno === Errno.EINVAL);
    } finally {
      await rig.close();
    }
  });
}
