import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { DeviceFeature, DeviceFeatureFlags } from '../../src/protocol/constants.js';
import {
  decodeDeviceFeatureReply,
  decodeDmaLoggingReport,
  decodeMigDeviceState,
  decodeMigrationData,
  encodeDeviceFeatureRequest,
  encodeDmaLoggingControl,
  encodeDmaLoggingReportRequest,
  encodeMigDeviceState,
  featureFlags,
} from '../../src/protocol/device-feature.js';
import { decodeMigDataReadReply, encodeMigDataReadRequest, encodeMigDataWriteRequest } from '../../src/protocol/mig-data.js';
import { encodeDmaMapRequest } from '../../src/protocol/dma-map.js';
import { Errno } from '../../src/protocol/errno.js';
import type { DeviceDescription, MigrationStateName } from '../../src/server/device.js';
import { MigrationFatalError } from '../../src/server/migration.js';
import { MigState, migStateName, transitionPath } from '../../src/server/migration-fsm.js';
import { startRig, type Rig } from '../helpers/raw-client.js';

const STATES = [MigState.STOP, MigState.RUNNING, MigState.STOP_COPY, MigState.RESUMING, MigState.PRE_COPY];

const setState = (s: number) =>
  encodeDeviceFeatureRequest({ flags: featureFlags(DeviceFeature.MIG_DEVICE_STATE, DeviceFeatureFlags.SET), data: encodeMigDeviceState({ deviceState: s, dataFd: -1 }) });
const getState = () => encodeDeviceFeatureRequest({ argsz: 16, flags: featureFlags(DeviceFeature.MIG_DEVICE_STATE, DeviceFeatureFlags.GET), data: new Uint8Array(8) });

async function stateOf(rig: Rig): Promise<number> {
  const r = await rig.call(Command.DEVICE_FEATURE, getState());
  return decodeMigDeviceState(decodeDeviceFeatureReply(r.payload).data).deviceState;
}

/** A device whose state is a byte blob; records every hop. */
function blobDevice(hops: string[], blob: () => Uint8Array, received: Uint8Array[], opts: { failOn?: string; fatal?: boolean } = {}): DeviceDescription {
  let pos = 0;
  let state: MigrationStateName = 'RUNNING';
  return {
    vendorId: 1,
    deviceId: 2,
    migration: {
      transition: (to, from) => {
        hops.push(`${from}>${to}`);
        if (opts.failOn === `${from}>${to}`) throw opts.fatal ? new MigrationFatalError('device broke') : new Error('refused');
        state = to;
        if (to === 'PRE_COPY' || to === 'STOP_COPY') pos = 0;
      },
      read: (max) => {
        const b = blob();
        // PRE_COPY streams nothing; STOP_COPY streams the blob.
        if (state !== 'STOP_COPY') return new Uint8Array(0);
        const n = Math.min(max, b.length - pos);
        const out = b.slice(pos, pos + n);
        pos += n;
        return out;
      },
      write: (d) => void received.push(d.slice()),
    },
  };
}

test('MIGRATION feature: STOP_COPY|PRE_COPY advertised; probe echoes', async () => {
  const rig = await startRig('memory', blobDevice([], () => new Uint8Array(0), []));
  try {
    const r = await rig.call(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ argsz: 16, flags: featureFlags(DeviceFeature.MIGRATION, DeviceFeatureFlags.GET), data: new Uint8Array(0) }));
    assert.equal(r.payload.length, 16);
    assert.equal(decodeMigrationData(decodeDeviceFeatureReply(r.payload).data), 0x5n);
    const probe = encodeDeviceFeatureRequest({ flags: featureFlags(DeviceFeature.MIG_DEVICE_STATE, DeviceFeatureFlags.PROBE | DeviceFeatureFlags.SET), data: new Uint8Array(0) });
    assert.deepEqual((await rig.call(Command.DEVICE_FEATURE, probe)).payload, probe);
    // GET with too small an argsz; SET on a GET-only feature.
    assert.equal(await rig.errno(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ argsz: 8, flags: featureFlags(DeviceFeature.MIGRATION, DeviceFeatureFlags.GET), data: new Uint8Array(0) })), Errno.EINVAL);
    assert.equal(await rig.errno(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ flags: featureFlags(DeviceFeature.MIGRATION, DeviceFeatureFlags.SET), data: new Uint8Array(8) })), Errno.EINVAL);
  } finally {
    await rig.close();
  }
});

test('state machine: every (from, to) pair follows the shortest non-saving path, one callback per hop', async () => {
  for (const from of STATES) {
    for (const to of STATES) {
      const hops: string[] = [];
      const rig = await startRig('memory', blobDevice(hops, () => new Uint8Array(4), []));
      try {
        if (from !== MigState.RUNNING) await rig.call(Command.DEVICE_FEATURE, setState(from));
        assert.equal(await stateOf(rig), from);
        hops.length = 0;
        let path: number[] | null;
        try {
          path = transitionPath(from, to, true);
        } catch {
          path = null;
        }
        if (path === null) {
          assert.equal(await rig.errno(Command.DEVICE_FEATURE, setState(to)), Errno.EINVAL, `${migStateName(from)}>${migStateName(to)} refused`);
          assert.equal(await stateOf(rig), from, 'state unchanged after a refused request');
          assert.deepEqual(hops, []);
          continue;
        }
        const echo = setState(to);
        assert.deepEqual((await rig.call(Command.DEVICE_FEATURE, echo)).payload, echo);
        assert.equal(await stateOf(rig), to);
        const expected: string[] = [];
        let cur: number = from;
        for (const h of path) {
          expected.push(`${migStateName(cur)}>${migStateName(h)}`);
          cur = h;
        }
        assert.deepEqual(hops, expected);
      } finally {
        await rig.close();
      }
    }
  }
  // The explicitly forbidden arc, and states that cannot be requested.
  assert.throws(() => transitionPath(MigState.STOP_COPY, MigState.PRE_COPY, true));
  const rig = await startRig('memory', blobDevice([], () => new Uint8Array(0), []));
  try {
    for (const bad of [MigState.ERROR, MigState.RUNNING_P2P, MigState.PRE_COPY_P2P, 8, 0xffffffff]) {
      assert.equal(await rig.errno(Command.DEVICE_FEATURE, setState(bad)), Errno.EINVAL, `state ${bad}`);
    }
  } finally {
    await rig.close();
  }
});

test('a failing hop leaves the last good state; a fatal one means ERROR, left only by reset', async () => {
  const hops: string[] = [];
  let rig = await startRig('memory', blobDevice(hops, () => new Uint8Array(0), [], { failOn: 'STOP>STOP_COPY' }));
  try {
    assert.equal(await rig.errno(Command.DEVICE_FEATURE, setState(MigState.STOP_COPY)), Errno.EIO);
    assert.equal(await stateOf(rig), MigState.STOP, 'RUNNING>STOP happened, STOP>STOP_COPY did not');
  } finally {
    await rig.close();
  }
  rig = await startRig('memory', blobDevice(hops, () => new Uint8Array(0), [], { failOn: 'RUNNING>STOP', fatal: true }));
  try {
    await rig.errno(Command.DEVICE_FEATURE, setState(MigState.STOP));
    assert.equal(await stateOf(rig), MigState.ERROR);
    assert.equal(await rig.errno(Command.DEVICE_FEATURE, setState(MigState.RUNNING)), Errno.EINVAL);
    await rig.call(Command.DEVICE_RESET);
    assert.equal(await stateOf(rig), MigState.RUNNING);
  } finally {
    await rig.close();
  }
});

test('MIG_DATA_READ/WRITE: only in the right states; 0, 1, one chunk and multi-MiB streams round-trip', async () => {
  const chunk = 1 << 20;
  for (const size of [0, 1, chunk, 3 * chunk + 12345]) {
    const blob = Uint8Array.from({ length: size }, (_, i) => (i * 7 + (i >> 11)) & 0xff);
    const received: Uint8Array[] = [];
    const src = await startRig('socket', blobDevice([], () => blob, []));
    const dst = await startRig('memory', blobDevice([], () => new Uint8Array(0), received));
    try {
      assert.equal(await src.errno(Command.MIG_DATA_READ, encodeMigDataReadRequest({ size: 16 })), Errno.EINVAL, 'not while RUNNING');
      assert.equal(await dst.errno(Command.MIG_DATA_WRITE, encodeMigDataWriteRequest(new Uint8Array(1))), Errno.EINVAL, 'not before RESUMING');
      await src.call(Command.DEVICE_FEATURE, setState(MigState.STOP_COPY));
      await dst.call(Command.DEVICE_FEATURE, setState(MigState.RESUMING));
      let total = 0;
      let reads = 0;
      for (;;) {
        const r = decodeMigDataReadReply((await src.call(Command.MIG_DATA_READ, encodeMigDataReadRequest({ size: chunk }))).payload);
        reads++;
        if (r.size > 0) await dst.call(Command.MIG_DATA_WRITE, encodeMigDataWriteRequest(r.data));
        total += r.size;
        if (r.size < chunk) break; // a short read ends the stream (spec)
      }
      // And a zero-length read after the end (libvfio-user's client convention).
      assert.equal(decodeMigDataReadReply((await src.call(Command.MIG_DATA_READ, encodeMigDataReadRequest({ size: chunk }))).payload).size, 0);
      assert.equal(total, size);
      assert.equal(reads, Math.floor(size / chunk) + 1);
      const got = new Uint8Array(total);
      let off = 0;
      for (const c of received) {
        got.set(c, off);
        off += c.length;
      }
      assert.ok(Buffer.from(got).equals(Buffer.from(blob)), `stream of ${size} bytes intact`);
      assert.equal(await src.errno(Command.MIG_DATA_READ, encodeMigDataReadRequest({ size: chunk + 1 })), Errno.E2BIG);
    } finally {
      await src.close();
      await dst.close();
    }
  }
});

test('dirty logging: page edges, across regions, held views, page-size conversion, read-and-clear', async () => {
  const rig = await startRig('memory', { vendorId: 1, deviceId: 2 }, { requireBusMaster: false });
  try {
    const P = 4096;
    const mem = native.memfdCreate('guest', false);
    native.ftruncate(mem, 8 * P);
    // Two adjacent regions of 4 pages each.
    await rig.call(Command.DMA_MAP, encodeDmaMapRequest({ flags: 3, offset: 0n, address: 0x10000n, size: BigInt(4 * P) }), [mem]);
    await rig.call(Command.DMA_MAP, encodeDmaMapRequest({ flags: 3, offset: BigInt(4 * P), address: 0x14000n, size: BigInt(4 * P) }), [mem]);
    native.close(mem);
    const start = encodeDeviceFeatureRequest({ flags: featureFlags(DeviceFeature.DMA_LOGGING_START, DeviceFeatureFlags.SET), data: encodeDmaLoggingControl({ pageSize: BigInt(P), ranges: [] }) });
    assert.deepEqual((await rig.call(Command.DEVICE_FEATURE, start)).payload, start);
    const report = async (iova: number, length: number, pageSize: number): Promise<number[]> => {
      const req = encodeDeviceFeatureRequest({
        argsz: 8 + 24 + 64,
        flags: featureFlags(DeviceFeature.DMA_LOGGING_REPORT, DeviceFeatureFlags.GET),
        data: encodeDmaLoggingReportRequest({ iova: BigInt(iova), length: BigInt(length), pageSize: BigInt(pageSize) }),
      });
      const bm = decodeDmaLoggingReport(decodeDeviceFeatureReply((await rig.call(Command.DEVICE_FEATURE, req)).payload).data).bitmap;
      const bits: number[] = [];
      for (let i = 0; i < bm.length * 8; i++) if (bm[i >> 3]! & (1 << (i & 7))) bits.push(i);
      return bits;
    };
    // Two bytes straddling pages 0|1 of region A; last byte of A plus first of B.
    rig.ctx.dma.writeSync(0x10000 + P - 1, new Uint8Array(2));
    rig.ctx.dma.writeSync(0x14000 - 1, new Uint8Array(2));
    assert.deepEqual(await report(0x10000, 4 * P, P), [0, 1, 3]);
    assert.deepEqual(await report(0x14000, 4 * P, P), [0]);
    assert.deepEqual(await report(0x10000, 4 * P, P), [], 'reports read and clear');
    // Page-size conversion: 8 KiB report pages OR pairs, 2 KiB repeat.
    rig.ctx.dma.writeSync(0x10000 + 2 * P, new Uint8Array(1));
    assert.deepEqual(await report(0x10000, 4 * P, 2 * P), [1]);
    rig.ctx.dma.writeSync(0x10000 + 3 * P, new Uint8Array(1));
    assert.deepEqual(await report(0x10000, 4 * P, P / 2), [6, 7]);
    // A held writable view is dirty in every report until released.
    const v = rig.ctx.dma.view(0x14000 + P, 16, { write: true });
    assert.deepEqual(await report(0x14000, 4 * P, P), [1]);
    assert.deepEqual(await report(0x14000, 4 * P, P), [1]);
    v.release();
    assert.deepEqual(await report(0x14000, 4 * P, P), [1], 'pages written before release are reported once more');
    assert.deepEqual(await report(0x14000, 4 * P, P), []);
    // Explicit mark; message-only region reports nothing; unmapped iova is ENOENT.
    rig.ctx.dma.markDirty(0x10000, 1);
    assert.deepEqual(await report(0x10000, 4 * P, P), [0]);
    assert.equal(
      await rig.errno(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ argsz: 100, flags: featureFlags(DeviceFeature.DMA_LOGGING_REPORT, DeviceFeatureFlags.GET), data: encodeDmaLoggingReportRequest({ iova: 0x90000n, length: BigInt(P), pageSize: BigInt(P) }) })),
      Errno.ENOENT,
    );
    const stop = encodeDeviceFeatureRequest({ flags: featureFlags(DeviceFeature.DMA_LOGGING_STOP, DeviceFeatureFlags.SET), data: new Uint8Array(0) });
    await rig.call(Command.DEVICE_FEATURE, stop);
    assert.equal(
      await rig.errno(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ argsz: 100, flags: featureFlags(DeviceFeature.DMA_LOGGING_REPORT, DeviceFeatureFlags.GET), data: encodeDmaLoggingReportRequest({ iova: 0x10000n, length: BigInt(P), pageSize: BigInt(P) }) })),
      Errno.EINVAL,
      'no report once logging stopped',
    );
  } finally {
    await rig.close();
  }
});

test('a client that disconnects in each migration phase leaves the device running or recoverable by reset', async () => {
  for (const phase of [MigState.PRE_COPY, MigState.STOP_COPY, MigState.STOP, MigState.RESUMING]) {
    const hops: string[] = [];
    const rig = await startRig('socket', blobDevice(hops, () => new Uint8Array(3 << 20), []));
    try {
      await rig.call(Command.DEVICE_FEATURE, setState(phase));
      if (phase === MigState.STOP_COPY) await rig.call(Command.MIG_DATA_READ, encodeMigDataReadRequest({ size: 4096 }));
      // Vanish in the middle of a read.
      rig.ep.transport.send(new Uint8Array([1, 0, 17, 0, 24, 0, 0, 0]));
      void rig.ep.close();
      await rig.reconnect();
      const st = await stateOf(rig);
      if (phase === MigState.PRE_COPY) {
        assert.equal(st, MigState.RUNNING, 'an abandoned pre-copy returns to RUNNING');
      } else {
        assert.equal(st, phase, 'stopped states are kept for the next client');
        await rig.call(Command.DEVICE_RESET);
        assert.equal(await stateOf(rig), MigState.RUNNING);
      }
    } finally {
      await rig.close();
    }
  }
});
