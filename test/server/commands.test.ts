import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/binding.js';
import { countOpenFds } from '../../src/native/fds.js';
import { Command } from '../../src/protocol/commands.js';
import { Errno } from '../../src/protocol/errno.js';
import { IrqInfoFlags, RegionInfoFlags, SetIrqsFlags, DmaMapFlags, DmaUnmapFlags } from '../../src/protocol/constants.js';
import { decodeDeviceInfoReply, encodeDeviceInfoRequest } from '../../src/protocol/device-info.js';
import { decodeRegionInfoReply, encodeRegionInfoRequest } from '../../src/protocol/region-info.js';
import { decodeIrqInfoReply, encodeIrqInfoRequest } from '../../src/protocol/irq-info.js';
import { encodeSetIrqsRequest } from '../../src/protocol/set-irqs.js';
import {
  decodeRegionReadReply,
  decodeRegionWriteReply,
  encodeRegionReadRequest,
  encodeRegionWriteRequest,
} from '../../src/protocol/region-access.js';
import { decodeWriteMultiReply, encodeWriteMultiRequest } from '../../src/protocol/write-multi.js';
import { decodeDmaUnmapReply, encodeDmaMapRequest, encodeDmaUnmapRequest } from '../../src/protocol/dma-map.js';
import { encodeDeviceFeatureRequest } from '../../src/protocol/device-feature.js';
import { encodeMessage } from '../../src/protocol/header.js';
import type { DeviceDescription, ResetReason } from '../../src/server/device.js';
import { TRANSPORTS, settle, startRig } from '../helpers/raw-client.js';

const u64 = (n: number | bigint): bigint => BigInt(n);

function sampleDevice(log: string[] = []): DeviceDescription {
  const bar0 = new Uint8Array(16);
  return {
    vendorId: 0xdead,
    deviceId: 0xbeef,
    subsystemVendorId: 0xcafe,
    subsystemId: 0xbabe,
    irqs: { intx: 1, msi: 4 },
    regions: {
      0: {
        size: 16,
        kind: 'io',
        read: (off, n) => bar0.slice(off, off + n),
        write: (off, d) => {
          bar0.set(d, off);
          log.push(`w0:${off}:${Array.from(d).join(',')}`);
        },
      },
      1: { size: 0x4000, shared: { mmapAreas: [{ offset: 0, size: 0x1000 }, { offset: 0x2000, size: 0x1000 }] } },
      2: {
        size: 0x1000,
        // Async callbacks with different delays: replies must still come in order.
        read: async (off, n) => {
          await settle(off === 0 ? 30 : 1);
          return new Uint8Array(n).fill(off & 0xff);
        },
        write: async (off) => {
          await settle(5);
          log.push(`w2:${off}`);
        },
      },
      4: { size: 0x1000, read: () => new Promise(() => {}) /* never resolves */ },
    },
    reset: (reason: ResetReason) => {
      log.push(`reset:${reason}`);
    },
  };
}

for (const kind of TRANSPORTS) {
  describe(`server commands over ${kind}`, () => {
    test('GET_INFO reports PCI|RESET, 9 regions, 5 irqs; a short request is EINVAL', async () => {
      const rig = await startRig(kind, sampleDevice());
      try {
        const r = await rig.call(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest({ argsz: 16 }));
        assert.equal(r.payload.length, 16);
        assert.deepEqual(decodeDeviceInfoReply(r.payload), { argsz: 16, flags: 3, numRegions: 9, numIrqs: 5 });
        assert.equal(await rig.errno(Command.DEVICE_GET_INFO, new Uint8Array(8)), Errno.EINVAL);
      } finally {
        await rig.close();
      }
    });

    test('GET_REGION_INFO: argsz retry, sparse caps and exactly one fd only when they fit', async () => {
      const rig = await startRig(kind, sampleDevice());
      try {
        const small = await rig.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ argsz: 32, index: 1 }));
        assert.equal(small.payload.length, 32);
        assert.equal(small.fds.length, 0);
        const s = decodeRegionInfoReply(small.payload);
        assert.equal(s.argsz, 80);
        assert.equal(s.flags & (RegionInfoFlags.READ | RegionInfoFlags.WRITE | RegionInfoFlags.MMAP | RegionInfoFlags.CAPS), 7);
        const big = await rig.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ argsz: 80, index: 1 }));
        assert.equal(big.payload.length, 80);
        assert.equal(big.fds.length, 1);
        const b = decodeRegionInfoReply(big.payload);
        assert.equal(b.flags & RegionInfoFlags.CAPS, RegionInfoFlags.CAPS);
        assert.equal(b.capOffset, 32);
        assert.equal(b.size, 0x4000n);
        const cap = b.caps[0] as { areas: { offset: bigint; size: bigint }[] };
        assert.deepEqual(cap.areas, [{ offset: 0n, size: 0x1000n }, { offset: 0x2000n, size: 0x1000n }]);
        // The fd maps the device's memory: bytes written there are what the device sees.
        const ab = native.mmap(big.fds[0]!, 0, 0x1000, 3);
        new Uint8Array(ab).set([1, 2, 3], 0x10);
        assert.deepEqual(Array.from(rig.ctx.region(1).memory!.subarray(0x10, 0x13)), [1, 2, 3]);
        native.munmap(ab);
        native.close(big.fds[0]!);
        const cfg = decodeRegionInfoReply((await rig.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ argsz: 32, index: 7 }))).payload);
        assert.equal(cfg.size, 256n);
        const none = decodeRegionInfoReply((await rig.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ argsz: 32, index: 5 }))).payload);
        assert.deepEqual([none.size, none.flags], [0n, 0]);
        assert.equal(await rig.errno(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ argsz: 32, index: 9 })), Errno.EINVAL);
        assert.equal(await rig.errno(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ argsz: 16, index: 0 })), Errno.EINVAL);
      } finally {
        await rig.close();
      }
    });

    test('GET_IRQ_INFO counts and flags; index 5 is EINVAL', async () => {
      const rig = await startRig(kind, sampleDevice());
      try {
        const info = async (index: number) => decodeIrqInfoReply((await rig.call(Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest({ argsz: 16, index }))).payload);
        const intx = await info(0);
        assert.equal(intx.count, 1);
        assert.ok(intx.flags & IrqInfoFlags.EVENTFD && intx.flags & IrqInfoFlags.MASKABLE);
        assert.equal((await info(1)).count, 4);
        assert.equal((await info(2)).count, 0);
        assert.equal((await info(3)).count, 1);
        assert.equal((await info(4)).count, 1);
        assert.equal(await rig.errno(Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest({ argsz: 16, index: 5 })), Errno.EINVAL);
      } finally {
        await rig.close();
      }
    });

    test('REGION_READ/WRITE: callbacks, config space, bounds and sizes', async () => {
      const log: string[] = [];
      const rig = await startRig(kind, sampleDevice(log), { maxDataXferSize: 0x2000 });
      try {
        const w = await rig.call(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 4n, region: 0, count: 4, data: new Uint8Array([9, 8, 7, 6]) }));
        assert.equal(w.payload.length, 16);
        assert.deepEqual(decodeRegionWriteReply(w.payload), { offset: 4n, region: 0, count: 4 });
        const r = await rig.call(Command.REGION_READ, encodeRegionReadRequest({ offset: 4n, region: 0, count: 4 }));
        assert.equal(r.payload.length, 16 + 4);
        assert.deepEqual(Array.from(decodeRegionReadReply(r.payload).data), [9, 8, 7, 6]);
        const cfg = decodeRegionReadReply((await rig.call(Command.REGION_READ, encodeRegionReadRequest({ offset: 0n, region: 7, count: 64 }))).payload).data;
        const dv = new DataView(cfg.buffer, cfg.byteOffset);
        assert.deepEqual([dv.getUint16(0, true), dv.getUint16(2, true), dv.getUint16(0x2c, true), dv.getUint16(0x2e, true)], [0xdead, 0xbeef, 0xcafe, 0xbabe]);
        assert.equal(cfg[0x3d], 1, 'interrupt pin INTA');
        assert.equal(dv.getUint32(0x10, true) & 1, 1, 'BAR0 is an I/O BAR');
        // Shared region without callbacks reads its memory.
        rig.ctx.region(1).memory!.set([0xaa, 0xbb], 0x2000);
        assert.deepEqual(Array.from(decodeRegionReadReply((await rig.call(Command.REGION_READ, encodeRegionReadRequest({ offset: 0x2000n, region: 1, count: 2 }))).payload).data), [0xaa, 0xbb]);
        // Errors.
        assert.equal(await rig.errno(Command.REGION_READ, encodeRegionReadRequest({ offset: 0n, region: 0xdeadbeef, count: 4 })), Errno.EINVAL);
        assert.equal(await rig.errno(Command.REGION_READ, encodeRegionReadRequest({ offset: 13n, region: 0, count: 4 })), Errno.EINVAL);
        assert.equal(await rig.errno(Command.REGION_READ, encodeRegionReadRequest({ offset: (1n << 64n) - 2n, region: 0, count: 4 })), Errno.EINVAL);
        assert.equal(await rig.errno(Command.REGION_READ, encodeRegionReadRequest({ offset: 0n, region: 1, count: 0x2001 })), Errno.E2BIG);
        assert.equal(await rig.errno(Command.REGION_READ, encodeRegionReadRequest({ offset: 0n, region: 5, count: 1 })), Errno.EINVAL);
        const bad = encodeRegionWriteRequest({ offset: 0n, region: 0, count: 4, data: new Uint8Array(4) });
        new DataView(bad.buffer).setUint32(12, 5, true); // count says 5, 4 data bytes
        assert.equal(await rig.errno(Command.REGION_WRITE, bad), Errno.EINVAL);
        assert.equal(await rig.errno(Command.REGION_READ, new Uint8Array(8)), Errno.EINVAL);
      } finally {
        await rig.close();
      }
    });

    test('commands are handled in arrival order while async callbacks are pending; NO_REPLY is never answered', async () => {
      const log: string[] = [];
      const rig = await startRig(kind, sampleDevice(log));
      try {
        const order: number[] = [];
        const slow = rig.call(Command.REGION_READ, encodeRegionReadRequest({ offset: 0n, region: 2, count: 4 })).then(() => order.push(1));
        // Posted write: must be applied after the slow read and before the next read.
        rig.ep.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 8n, region: 0, count: 1, data: new Uint8Array([0x55]) }));
        const fast = rig.call(Command.REGION_READ, encodeRegionReadRequest({ offset: 8n, region: 0, count: 1 })).then((m) => {
          order.push(2);
          return decodeRegionReadReply(m.payload).data[0];
        });
        const [, v] = await Promise.all([slow, fast]);
        assert.deepEqual(order, [1, 2]);
        assert.equal(v, 0x55);
        let stray = 0;
        rig.ep.setHandlers({ onStrayReply: () => stray++ });
        rig.ep.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 0n, region: 2, count: 1, data: new Uint8Array([1]) }));
        // A failing posted write gets no reply either.
        rig.ep.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 0n, region: 9, count: 1, data: new Uint8Array([1]) }));
        await rig.call(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest({ argsz: 16 }));
        assert.equal(stray, 0);
        assert.ok(log.includes('w2:0'));
      } finally {
        await rig.close();
      }
    });

    test('a callback that never settles gets ETIMEDOUT before the client timeout, and the queue moves on', async () => {
      const rig = await startRig(kind, sampleDevice(), { callbackTimeoutMs: 100 });
      try {
        const t0 = Date.now();
        assert.equal(await rig.errno(Command.REGION_READ, encodeRegionReadRequest({ offset: 0n, region: 4, count: 4 })), Errno.ETIMEDOUT);
        assert.ok(Date.now() - t0 < 1000);
        const r = await rig.call(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest({ argsz: 16 }));
        assert.equal(r.payload.length, 16);
      } finally {
        await rig.close();
      }
    });

    test('REGION_WRITE_MULTI applies every entry in order and reports the count', async () => {
      const log: string[] = [];
      const rig = await startRig(kind, sampleDevice(log));
      try {
        const entries = [0, 1, 2].map((i) => ({ offset: u64(i * 4), region: 0, count: 4, data: new Uint8Array([i, i, i, i]) }));
        const r = await rig.call(Command.REGION_WRITE_MULTI, encodeWriteMultiRequest({ entries }));
        assert.equal(decodeWriteMultiReply(r.payload).wrCnt, 3n);
        assert.deepEqual(log, ['w0:0:0,0,0,0', 'w0:4:1,1,1,1', 'w0:8:2,2,2,2']);
        const bad = [{ offset: 0n, region: 0, count: 4, data: new Uint8Array(4) }, { offset: 15n, region: 0, count: 4, data: new Uint8Array(4) }];
        assert.equal(await rig.errno(Command.REGION_WRITE_MULTI, encodeWriteMultiRequest({ entries: bad })), Errno.EINVAL);
        assert.equal(log.length, 3, 'a bad batch applies nothing');
      } finally {
        await rig.close();
      }
    });

    test('SET_IRQS: eventfd delivery, masks with pending bits, de-assign and disable-all', async () => {
      const rig = await startRig(kind, sampleDevice(), { requireBusMaster: false });
      try {
        const efd = native.eventfd(0, native.EFD_NONBLOCK);
        const msi = (flags: number, start: number, count: number, fds?: number[], data?: Uint8Array) =>
          rig.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags, index: 1, start, count, ...(data ? { data } : {}) }), fds);
        await msi(SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, 2, 1, [efd]);
        assert.equal(rig.ctx.irq.trigger('msi', 2), 'delivered');
        assert.equal(native.eventfdRead(efd), 1n);
        await msi(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_MASK, 2, 1);
        assert.equal(rig.ctx.irq.trigger('msi', 2), 'masked');
        assert.equal(native.eventfdRead(efd), -1n);
        await msi(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_UNMASK, 2, 1);
        assert.equal(native.eventfdRead(efd), 1n, 'pending interrupt delivered on unmask');
        // Loopback trigger from the client, BOOL data selecting vectors.
        await msi(SetIrqsFlags.DATA_BOOL | SetIrqsFlags.ACTION_TRIGGER, 2, 2, undefined, new Uint8Array([1, 0]));
        assert.equal(native.eventfdRead(efd), 1n);
        // De-assign: no fd any more.
        await msi(SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, 2, 1);
        assert.equal(rig.ctx.irq.trigger('msi', 2), 'no-eventfd');
        await msi(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, 0, 0);
        // disable-all on an index with no vectors is accepted (QEMU sends it).
        await rig.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, index: 2, start: 0, count: 0 }));
        // Errors: start+count beyond the vectors, two data types, ERR with MASK, fd count mismatch.
        assert.equal(await rig.errno(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, index: 1, start: 3, count: 2 })), Errno.EINVAL);
        assert.equal(await rig.errno(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.DATA_BOOL | SetIrqsFlags.ACTION_TRIGGER, index: 1, start: 0, count: 1 })), Errno.EINVAL);
        assert.equal(await rig.errno(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_MASK, index: 3, start: 0, count: 1 })), Errno.EINVAL);
        assert.equal(await rig.errno(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: 0, index: 6, start: 0, count: 0 })), Errno.EINVAL);
        native.close(efd);
      } finally {
        await rig.close();
      }
    });

    test('SET_IRQS loopback (TRIGGER with NONE/BOOL) signals the fd whatever the masks, auto-mask, Bus Master and INTx-Disable say', async () => {
      // Bus Master stays off (requireBusMaster is the default): device interrupts are suppressed.
      const rig = await startRig(kind, sampleDevice());
      try {
        const msiFd = native.eventfd(0, native.EFD_NONBLOCK);
        const intxFd = native.eventfd(0, native.EFD_NONBLOCK);
        const set = (flags: number, index: number, start: number, count: number, fds?: number[], data?: Uint8Array) =>
          rig.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags, index, start, count, ...(data ? { data } : {}) }), fds);
        await set(SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, 1, 0, 1, [msiFd]);
        await set(SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, 0, 0, 1, [intxFd]);
        assert.equal(rig.ctx.irq.trigger('msi', 0), 'bus-master-off', 'device interrupts keep their Bus Master gating');
        assert.equal(native.eventfdRead(msiFd), -1n);
        // Bus Master off: the loopback still reaches the fd.
        await set(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, 1, 0, 1);
        assert.equal(native.eventfdRead(msiFd), 1n);
        // Masked: signalled, and nothing becomes pending.
        await set(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_MASK, 1, 0, 1);
        await set(SetIrqsFlags.DATA_BOOL | SetIrqsFlags.ACTION_TRIGGER, 1, 0, 1, undefined, new Uint8Array([1]));
        assert.equal(native.eventfdRead(msiFd), 1n);
        assert.equal(rig.ctx.irqs.isPending(1, 0), false);
        assert.equal(rig.ctx.irqs.isMasked(1, 0), true, 'the mask is left alone');
        // INTx: no auto-mask after a loopback, so a second one fires too; INTx-Disable does not stop it.
        await set(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, 0, 0, 1);
        assert.equal(rig.ctx.irqs.isMasked(0, 0), false, 'a loopback does not auto-mask INTx');
        await set(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, 0, 0, 1);
        assert.equal(native.eventfdRead(intxFd), 2n);
        // Command register: INTx-Disable (bit 10) set.
        await rig.call(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 4n, region: 7, count: 2, data: new Uint8Array([0x00, 0x04]) }));
        assert.equal(rig.ctx.irq.trigger('intx'), 'intx-disabled');
        await set(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, 0, 0, 1);
        assert.equal(native.eventfdRead(intxFd), 1n);
        native.close(msiFd);
        native.close(intxFd);
      } finally {
        await rig.close();
      }
    });

    test('INTx is level-triggered: auto-masked when it fires, fires again on unmask while still asserted', async () => {
      const rig = await startRig(kind, sampleDevice());
      try {
        const efd = native.eventfd(0, native.EFD_NONBLOCK);
        const intx = (flags: number, fds?: number[]) => rig.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags, index: 0, start: 0, count: 1 }), fds);
        await intx(SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, [efd]);
        assert.equal(rig.ctx.irq.assertIntx(), 'delivered');
        assert.equal(native.eventfdRead(efd), 1n);
        // QEMU masks, the guest handles it, QEMU unmasks: the line is still up, so it fires again.
        await intx(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_MASK);
        await intx(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_UNMASK);
        assert.equal(native.eventfdRead(efd), 1n);
        rig.ctx.irq.deassertIntx();
        await intx(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_UNMASK);
        assert.equal(native.eventfdRead(efd), -1n, 'deasserted line does not fire on unmask');
        // Status register's interrupt bit follows the line.
        const st = decodeRegionReadReply((await rig.call(Command.REGION_READ, encodeRegionReadRequest({ offset: 6n, region: 7, count: 2 }))).payload).data;
        assert.equal(st[0]! & 0x8, 0);
        native.close(efd);
      } finally {
        await rig.close();
      }
    });

    test('DMA_MAP/UNMAP: fd-backed views, overlap, exact-match unmap, unmap-all, limits', async () => {
      const events: string[] = [];
      const desc = sampleDevice();
      desc.dma = {
        onMap: (i) => void events.push(`map:${i.iova}:${i.mapped}`),
        onUnmap: (i) => void events.push(`unmap:${i.iova}`),
      };
      const rig = await startRig(kind, desc, { requireBusMaster: false, maxDmaRegions: 3, viewRevokeTimeoutMs: 50 });
      try {
        const mem = native.memfdCreate('guest', false);
        native.ftruncate(mem, 0x10000);
        const guest = new Uint8Array(native.mmap(mem, 0, 0x10000, 3));
        const map = (iova: number, size: number, offset: number, fds?: number[], flags = DmaMapFlags.READ | DmaMapFlags.WRITE) =>
          rig.call(Command.DMA_MAP, encodeDmaMapRequest({ flags, offset: u64(offset), address: u64(iova), size: u64(size) }), fds);
        const r = await map(0x100000, 0x4000, 0x1000, [mem]);
        assert.equal(r.payload.length, 0);
        // Device writes land in the client's memory at the fd offset.
        rig.ctx.dma.writeSync(0x100010, new Uint8Array([1, 2, 3]));
        assert.deepEqual(Array.from(guest.subarray(0x1010, 0x1013)), [1, 2, 3]);
        guest.set([7, 7], 0x1020);
        assert.deepEqual(Array.from(rig.ctx.dma.readSync(0x100020, 2)), [7, 7]);
        const view = rig.ctx.dma.view(0x100000, 0x100, { write: true });
        assert.equal(view.bytes.length, 0x100);
        // Identical re-map is accepted, an overlapping one is EEXIST.
        await map(0x100000, 0x4000, 0x1000, [mem]);
        assert.equal(await rig.errno(Command.DMA_MAP, encodeDmaMapRequest({ flags: 3, offset: 0n, address: 0x102000n, size: 0x4000n }), [mem]), Errno.EEXIST);
        // Without fd: message-based region; a read-only map refuses device writes.
        await map(0x200000, 0x1000, 0);
        await map(0x300000, 0x1000, 0, [mem], DmaMapFlags.READ);
        assert.throws(() => rig.ctx.dma.writeSync(0x300000, new Uint8Array(1)), { code: 'ERR_VFIO_USER_DMA' });
        assert.equal(await rig.errno(Command.DMA_MAP, encodeDmaMapRequest({ flags: 3, offset: 0n, address: 0x400000n, size: 0x1000n })), Errno.ENOSPC);
        // Unmap needs an exact match.
        assert.equal(await rig.errno(Command.DMA_UNMAP, encodeDmaUnmapRequest({ flags: 0, address: 0x100000n, size: 0x1000n })), Errno.ENOENT);
        const un = await rig.call(Command.DMA_UNMAP, encodeDmaUnmapRequest({ argsz: 24, flags: 0, address: 0x100000n, size: 0x4000n }));
        assert.equal(un.payload.length, 24);
        assert.deepEqual(decodeDmaUnmapReply(un.payload), { argsz: 24, flags: 0, address: 0x100000n, size: 0x4000n });
        assert.equal(view.bytes.length, 0, 'a view held across an unmap (past viewRevokeTimeoutMs) is detached, not dangling');
        view.release();
        assert.throws(() => rig.ctx.dma.readSync(0x100000, 1), { code: 'ERR_VFIO_USER_DMA' });
        await rig.call(Command.DMA_UNMAP, encodeDmaUnmapRequest({ flags: DmaUnmapFlags.ALL, address: 0n, size: 0n }));
        assert.equal(rig.ctx.dma.regions().length, 0);
        assert.equal(await rig.errno(Command.DMA_UNMAP, encodeDmaUnmapRequest({ flags: DmaUnmapFlags.ALL, address: 1n, size: 0n })), Errno.EINVAL);
        assert.deepEqual(events, ['map:1048576:true', 'map:2097152:false', 'map:3145728:true', 'unmap:1048576', 'unmap:2097152', 'unmap:3145728']);
        native.munmap(guest.buffer as ArrayBuffer);
        native.close(mem);
      } finally {
        await rig.close();
      }
    });

    test('DMA is refused while Bus Master Enable is off (default) and allowed once the guest sets it', async () => {
      const rig = await startRig(kind, sampleDevice());
      try {
        const mem = native.memfdCreate('guest', false);
        native.ftruncate(mem, 0x1000);
        await rig.call(Command.DMA_MAP, encodeDmaMapRequest({ flags: 3, offset: 0n, address: 0n, size: 0x1000n }), [mem]);
        native.close(mem);
        assert.throws(() => rig.ctx.dma.readSync(0, 4), (e: { errno?: number }) => e.errno === Errno.EPERM);
        await rig.call(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 4n, region: 7, count: 2, data: new Uint8Array([0x04, 0]) }));
        assert.equal(rig.ctx.dma.readSync(0, 4).length, 4);
      } finally {
        await rig.close();
      }
    });

    test('DEVICE_RESET calls reset with its reason; unknown and obsolete commands are refused', async () => {
      const log: string[] = [];
      const rig = await startRig(kind, sampleDevice(log));
      try {
        const r = await rig.call(Command.DEVICE_RESET);
        assert.equal(r.payload.length, 0);
        assert.deepEqual(log, ['reset:device-reset']);
        assert.equal(await rig.errno(99, new Uint8Array(4)), Errno.ENOSYS);
        assert.equal(await rig.errno(Command.DIRTY_PAGES, new Uint8Array(16)), Errno.EINVAL);
        assert.equal(await rig.errno(Command.DMA_READ, new Uint8Array(16)), Errno.EINVAL);
        assert.equal(await rig.errno(Command.VERSION, new Uint8Array(4)), Errno.EINVAL);
        // DEVICE_FEATURE for migration on a device without migration: ENOTTY.
        assert.equal(await rig.errno(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ flags: 0x10001, data: new Uint8Array(0), argsz: 16 })), Errno.ENOTTY);
      } finally {
        await rig.close();
      }
    });

    test('invalid requests carrying fds leave the server fd count unchanged', async () => {
      const rig = await startRig(kind, sampleDevice(), { requireBusMaster: false });
      try {
        await rig.call(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest({ argsz: 16 }));
        await settle();
        const before = countOpenFds();
        const efds = [0, 1, 2].map(() => native.eventfd(0, 0));
        // fds on a command that takes none; SET_IRQS with fd count != count; DMA_MAP with 2 fds; DMA_MAP overlapping.
        assert.equal(await rig.errno(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest({ argsz: 16 }), efds), Errno.EINVAL);
        assert.equal(await rig.errno(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index: 1, start: 0, count: 1 }), efds.slice(0, 2)), Errno.EINVAL);
        assert.equal(await rig.errno(Command.DMA_MAP, encodeDmaMapRequest({ flags: 3, offset: 0n, address: 0n, size: 0x1000n }), efds.slice(0, 2)), Errno.EINVAL);
        assert.equal(await rig.errno(Command.DMA_MAP, encodeDmaMapRequest({ flags: 3, offset: 0n, address: 0n, size: 0n }), efds.slice(0, 1)), Errno.EINVAL);
        assert.equal(await rig.errno(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 0n, region: 0, count: 1, data: new Uint8Array(1) }), efds), Errno.EINVAL);
        for (const fd of efds) native.close(fd);
        await settle();
        assert.equal(countOpenFds(), before);
      } finally {
        await rig.close();
      }
    });

    test('an oversize message gets E2BIG and the next message is served', async () => {
      const rig = await startRig(kind, sampleDevice(), { maxMessageSize: 64 * 1024, maxDataXferSize: 32 * 1024 });
      try {
        const big = encodeMessage({ msgId: 0x4242, command: Command.REGION_WRITE, flags: 0, error: 0 }, new Uint8Array(100 * 1024));
        const errored = new Promise<number>((resolve) => rig.ep.setHandlers({ onStrayReply: (m) => resolve(m.header.error) }));
        rig.ep.transport.send(big);
        assert.equal(await errored, Errno.E2BIG);
        const r = await rig.call(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest({ argsz: 16 }));
        assert.equal(r.payload.length, 16);
      } finally {
        await rig.close();
      }
    });

    test('a client gone mid-command leaves the server ready for the next client, device state intact', async () => {
      const log: string[] = [];
      const rig = await startRig(kind, sampleDevice(log));
      try {
        await rig.call(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 0n, region: 0, count: 2, data: new Uint8Array([0x12, 0x34]) }));
        const efd = native.eventfd(0, 0);
        await rig.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index: 0, start: 0, count: 1 }), [efd]);
        native.close(efd);
        // Start a slow async write and vanish before its reply.
        rig.ep.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 0n, region: 2, count: 1, data: new Uint8Array([1]) }));
        void rig.ep.close();
        const ep2 = await rig.reconnect();
        assert.ok(log.includes('reset:lost-connection'));
        assert.ok(log.includes('w2:0'), 'the command sent before the disconnect still ran');
        assert.equal(rig.ctx.irq.hasEventfd('intx'), false, 'interrupt fds of the old client are dropped');
        const r = await ep2.request(Command.REGION_READ, encodeRegionReadRequest({ offset: 0n, region: 0, count: 2 }));
        assert.deepEqual(Array.from(decodeRegionReadReply(r.payload).data), [0x12, 0x34]);
      } finally {
        await rig.close();
      }
    });

    test('the first message must be VERSION', async () => {
      const rig = await startRig(kind, sampleDevice(), {}, undefined, false);
      try {
        assert.equal(await rig.errno(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest({ argsz: 16 })), Errno.EINVAL);
        await rig.ctx.waitForDisconnect();
        assert.equal(rig.ctx.connected, false);
      } finally {
        await rig.close();
      }
    });
  });
}

test('GET_REGION_IO_FDS hands out the ioeventfds a device registered; signalling one reaches the device', async () => {
  const { decodeRegionIoFdsReply, encodeRegionIoFdsRequest } = await import('../../src/protocol/region-io-fds.js');
  const rig = await startRig('socket', sampleDevice());
  try {
    const rings: number[] = [];
    const db = rig.ctx.addIoEventFd(0, { offset: 8, size: 4, datamatch: 1n, onSignal: (n) => void rings.push(n) });
    rig.ctx.addIoEventFd(0, { offset: 12, size: 0, onSignal: () => {} });
    const small = await rig.call(Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest({ argsz: 16, index: 0 }));
    assert.equal(small.fds.length, 0, 'no fds when the entries do not fit');
    const r = await rig.call(Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest({ argsz: 1024, index: 0 }));
    const reply = decodeRegionIoFdsReply(r.payload);
    assert.equal(reply.count, 2);
    assert.equal(r.fds.length, 2);
    assert.deepEqual(reply.entries.map((e) => [e.offset, e.size, e.flags, e.datamatch]), [[8n, 4n, 2 | 1, 1n], [12n, 0n, 2, 0n]]);
    native.eventfdWrite(r.fds[reply.entries[0]!.fdIndex]!, 1);
    await settle();
    assert.deepEqual(rings, [1]);
    for (const fd of r.fds) native.close(fd);
    db.remove();
    assert.equal(await rig.errno(Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest({ argsz: 16, index: 5 })), Errno.EINVAL);
  } finally {
    await rig.close();
  }
});

test('quiesce and resume bracket every operation that needs a quiet device; a lost client loses its memory before the device runs again', async () => {
  const log: string[] = [];
  const rig = await startRig('memory', {
    vendorId: 1,
    deviceId: 2,
    quiesce: async () => {
      await settle(5);
      log.push('quiesce');
    },
    resume: () => void log.push('resume'),
    dma: { onMap: () => void log.push('map'), onUnmap: () => void log.push('unmap') },
    reset: (r) => void log.push(`reset:${r}`),
    migration: { transition: (to) => void log.push(`->${to}`), read: () => new Uint8Array(0), write: () => {} },
  });
  try {
    const mem = native.memfdCreate('g', false);
    native.ftruncate(mem, 4096);
    await rig.call(Command.DMA_MAP, encodeDmaMapRequest({ flags: 3, offset: 0n, address: 0n, size: 4096n }), [mem]);
    native.close(mem);
    assert.deepEqual(log.splice(0), ['quiesce', 'map', 'resume']);
    await rig.call(Command.DEVICE_RESET);
    assert.deepEqual(log.splice(0), ['quiesce', 'reset:device-reset', 'resume']);
    const { encodeDeviceFeatureRequest, encodeMigDeviceState } = await import('../../src/protocol/device-feature.js');
    await rig.call(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ flags: 0x20002, data: encodeMigDeviceState({ deviceState: 6, dataFd: 0 }) }));
    assert.deepEqual(log.splice(0), ['quiesce', '->PRE_COPY', 'resume']);
    void rig.ep.close();
    await rig.ctx.waitForDisconnect();
    assert.deepEqual(log.splice(0), ['quiesce', 'unmap', '->RUNNING', 'reset:lost-connection', 'resume']);
  } finally {
    await rig.close();
  }
});
