// Every number a client controls has a bound, checked without overflow:
// message size, fds per message, DMA region count and sizes, offsets near
// 2^64, transfer sizes, dirty bitmap sizes, IRQ ranges. DMA views never reach
// outside a mapping, and an unmap while the device holds a view makes later
// access through it fail safely.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/binding.js';
import { countOpenFds } from '../../src/native/fds.js';
import { Command } from '../../src/protocol/commands.js';
import { Errno } from '../../src/protocol/errno.js';
import { encodeMessage } from '../../src/protocol/header.js';
import { DmaError } from '../../src/server/dma.js';
import type { DeviceDescription } from '../../src/server/device.js';
import { startRig, settle } from '../helpers/raw-client.js';
import { concat, header } from '../fuzz/gen.js';

const PAGE = 4096;
const U64_MAX = (1n << 64n) - 1n;
const u32s = (...v: number[]): Uint8Array => new Uint8Array(new Uint32Array(v.map((x) => x >>> 0)).buffer);
const u64s = (...v: bigint[]): Uint8Array => new Uint8Array(new BigUint64Array(v.map((x) => BigInt.asUintN(64, x))).buffer);
const dmaMap = (flags: number, offset: bigint, iova: bigint, size: bigint): Uint8Array => concat(u32s(32, flags), u64s(offset, iova, size));
const regionRead = (region: number, offset: bigint, count: number): Uint8Array => concat(u64s(offset), u32s(region, count));

function device(): DeviceDescription {
  return {
    vendorId: 1,
    deviceId: 2,
    irqs: { intx: 1, msi: 4, msix: 8 },
    regions: { 0: { size: 0x1000, shared: true }, 2: { size: 0x100, read: (_o, n) => new Uint8Array(n), write: () => {} } },
    migration: { transition: () => {}, read: () => new Uint8Array(0), write: () => {} },
  };
}

function memfd(size: number, seal = false): number {
  const fd = native.memfdCreate('bounds', seal);
  native.ftruncate(fd, size);
  if (seal) native.addSeals(fd, native.F_SEAL_SHRINK | native.F_SEAL_GROW);
  return fd;
}

test('message size: too big is E2BIG with the stream kept in step; beyond the drain limit, or under 16, the connection drops', async () => {
  const rig = await startRig('socket', device(), { maxMessageSize: 64 * 1024, maxDataXferSize: 32 * 1024 });
  try {
    const t = rig.ep.transport;
    const big = 64 * 1024 + 1;
    const msg = new Uint8Array(big);
    msg.set(header(0x1234, Command.REGION_WRITE, big));
    const err = new Promise<number>((resolve) => rig.ep.setHandlers({ onStrayReply: (m) => resolve(m.header.error) }));
    t.send(msg);
    assert.equal(await err, Errno.E2BIG);
    // Still in step: the next command is answered normally.
    const info = await rig.call(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0));
    assert.equal(info.payload.length, 16);
    // msg_size 8: not a message at all; the server drops us.
    const closed = new Promise<void>((resolve) => t.setHandlers({ onClose: () => resolve() }));
    t.send(header(1, Command.DEVICE_GET_INFO, 8));
    await closed;
    await rig.ctx.waitForDisconnect();
    // msg_size 4 GiB - 1: beyond any drain, dropped too (and nothing allocated for it).
    const ep2 = await rig.reconnect();
    const closed2 = new Promise<void>((resolve) => ep2.transport.setHandlers({ onClose: () => resolve() }));
    ep2.transport.send(header(2, Command.REGION_WRITE, 0xffffffff));
    await closed2;
  } finally {
    await rig.close();
  }
});

test('fds per message: more than max_msg_fds are closed and the command refused; nothing leaks', async () => {
  const rig = await startRig('socket', device(), { maxMsgFds: 4 });
  try {
    await settle();
    const base = countOpenFds();
    const fds = Array.from({ length: 12 }, () => native.eventfd(0, native.EFD_NONBLOCK));
    const errno = await rig.errno(Command.DEVICE_SET_IRQS, u32s(20, 0x24, 2, 0, 8), fds);
    assert.equal(errno, Errno.EINVAL);
    for (const fd of fds) native.close(fd);
    await settle();
    assert.equal(countOpenFds(), base);
    // Fds on a command that takes none: refused and closed.
    const e2 = native.eventfd(0, 0);
    assert.equal(await rig.errno(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0), [e2]), Errno.EINVAL);
    native.close(e2);
    await settle();
    assert.equal(countOpenFds(), base);
  } finally {
    await rig.close();
  }
});

test('DMA regions: count limit, size 0, past 2^64, over 2^53, file range wraps, short files', async () => {
  const rig = await startRig('memory', device(), { maxDmaRegions: 3 });
  try {
    for (let i = 0; i < 3; i++) await rig.call(Command.DMA_MAP, dmaMap(3, 0n, BigInt(i * PAGE), BigInt(PAGE)));
    assert.equal(await rig.errno(Command.DMA_MAP, dmaMap(3, 0n, 0x100000n, BigInt(PAGE))), Errno.ENOSPC);
    await rig.call(Command.DMA_UNMAP, concat(u32s(24, 2), u64s(0n, 0n)));
    assert.equal(await rig.errno(Command.DMA_MAP, dmaMap(3, 0n, 0n, 0n)), Errno.EINVAL);
    assert.equal(await rig.errno(Command.DMA_MAP, dmaMap(3, 0n, U64_MAX - 4095n, 8192n)), Errno.EINVAL);
    assert.equal(await rig.errno(Command.DMA_MAP, dmaMap(3, 0n, 0n, 1n << 60n)), Errno.ENOSPC);
    // The largest region allowed works, and an access at its very end is exact.
    await rig.call(Command.DMA_MAP, dmaMap(3, 0n, 0n, (1n << 53n) - 1n));
    assert.equal(rig.ctx.dmaTable.segments((1n << 53n) - 2n, 1)[0]!.offset, 2 ** 53 - 2);
    assert.throws(() => rig.ctx.dmaTable.segments((1n << 53n) - 2n, 2), (e: Error) => (e as { errno?: number }).errno === Errno.ENOENT);
    await rig.call(Command.DMA_UNMAP, concat(u32s(24, 2), u64s(0n, 0n)));
    const fd = memfd(2 * PAGE);
    assert.equal(await rig.errno(Command.DMA_MAP, dmaMap(3, U64_MAX - 4095n, 0n, 8192n), [fd]), Errno.EINVAL, 'file offset + size wraps');
    assert.equal(await rig.errno(Command.DMA_MAP, dmaMap(3, BigInt(PAGE), 0n, 2n * BigInt(PAGE)), [fd]), Errno.EINVAL, 'file shorter than the map');
    assert.equal(await rig.errno(Command.DMA_MAP, dmaMap(3, 0n, 0n, 1n << 40n), [fd]), Errno.EINVAL, 'file far shorter than the map');
    native.close(fd);
    assert.equal(rig.ctx.dmaTable.count, 0);
  } finally {
    await rig.close();
  }
});

test('region accesses: offsets near 2^64, counts beyond the region or max_data_xfer_size, unknown regions', async () => {
  const rig = await startRig('memory', device(), { maxDataXferSize: 0x2000, maxMessageSize: 0x4000 });
  try {
    for (const [off, n] of [
      [U64_MAX, 1],
      [U64_MAX - 7n, 8],
      [U64_MAX, 0xffffffff],
      [0x1000n, 1],
      [0xfffn, 2],
      [1n << 63n, 4],
    ] as const) {
      assert.equal(await rig.errno(Command.REGION_READ, regionRead(0, off, n)), n > 0x2000 ? Errno.E2BIG : Errno.EINVAL, `read ${off}+${n}`);
    }
    assert.notEqual(await rig.errno(Command.REGION_READ, regionRead(0, 0n, 0x2001)), 0);
    assert.equal(await rig.errno(Command.REGION_READ, regionRead(9, 0n, 1)), Errno.EINVAL);
    assert.equal(await rig.errno(Command.REGION_READ, regionRead(0xffffffff, 0n, 1)), Errno.EINVAL);
    assert.equal(await rig.errno(Command.REGION_WRITE, concat(regionRead(0, U64_MAX - 3n, 8), new Uint8Array(8))), Errno.EINVAL);
    // WRITE_MULTI: one bad entry, nothing written.
    const mem = rig.ctx.region(0).memory!;
    mem.fill(0);
    const entries = concat(u64s(1n << 64n > 0n ? 2n : 0n), u64s(0n), u32s(0, 4), new Uint8Array(8).fill(7), u64s(U64_MAX - 1n), u32s(0, 4), new Uint8Array(8));
    assert.equal(await rig.errno(Command.REGION_WRITE_MULTI, entries), Errno.EINVAL);
    assert.equal(mem[0], 0);
    // Migration transfer sizes.
    assert.notEqual(await rig.errno(Command.MIG_DATA_READ, u32s(8 + 0x2001, 0x2001)), 0);
    assert.notEqual(await rig.errno(Command.MIG_DATA_READ, u32s(0xffffffff, 0xffffffff)), 0);
  } finally {
    await rig.close();
  }
});

test('dirty bitmaps: a report whose bitmap would pass max_bitmap_size is E2BIG; ranges are checked', async () => {
  const rig = await startRig('memory', device(), { maxDirtyBitmapSize: 4096 });
  try {
    const fd = memfd(16 * PAGE, true);
    await rig.call(Command.DMA_MAP, dmaMap(3, 0n, 0x100000n, 16n * BigInt(PAGE)), [fd]);
    native.close(fd);
    await rig.call(Command.DMA_MAP, dmaMap(3, 0n, 1n << 40n, 1n << 45n));
    const start = concat(u32s(16 + 16, 6 | (1 << 17)), u64s(BigInt(PAGE)), u32s(0, 0));
    await rig.call(Command.DEVICE_FEATURE, start);
    const report = (iova: bigint, len: bigint, ps: bigint, argsz = 0xffffffff) => concat(u32s(argsz, 8 | (1 << 16)), u64s(iova, len, ps));
    // 2^45 bytes at 4 KiB pages: 1 GiB of bitmap.
    assert.equal(await rig.errno(Command.DEVICE_FEATURE, report(1n << 40n, 1n << 45n, BigInt(PAGE))), Errno.E2BIG);
    assert.notEqual(await rig.errno(Command.DEVICE_FEATURE, report(0x100000n, U64_MAX, BigInt(PAGE))), 0);
    assert.notEqual(await rig.errno(Command.DEVICE_FEATURE, report(0x100000n, 16n * BigInt(PAGE), 0n)), 0);
    assert.notEqual(await rig.errno(Command.DEVICE_FEATURE, report(0x100000n, 16n * BigInt(PAGE), 3n)), 0);
    assert.notEqual(await rig.errno(Command.DEVICE_FEATURE, report(0x100000n, 32n * BigInt(PAGE), BigInt(PAGE))), 0, 'past the region');
    assert.notEqual(await rig.errno(Command.DEVICE_FEATURE, report(0x100000n, 16n * BigInt(PAGE), BigInt(PAGE), 8)), 0, 'argsz too small');
    const ok = await rig.call(Command.DEVICE_FEATURE, report(0x100000n, 16n * BigInt(PAGE), BigInt(PAGE), 8 + 24 + 8));
    assert.equal(ok.payload.length, 8 + 24 + 8);
  } finally {
    await rig.close();
  }
});

test('IRQ ranges: start + count past 2^32, past the vectors, unknown index; fds closed on refusal', async () => {
  const rig = await startRig('memory', device());
  try {
    await settle();
    const base = countOpenFds();
    for (const [index, start, count] of [
      [2, 0xffffffff, 2],
      [2, 0, 9],
      [2, 8, 1],
      [1, 3, 2],
      [5, 0, 1],
      [0xffffffff, 0, 1],
      [0, 0, 2],
    ] as const) {
      assert.equal(await rig.errno(Command.DEVICE_SET_IRQS, u32s(20, 0x21, index, start, count)), Errno.EINVAL, `${index}:${start}+${count}`);
      const efd = native.eventfd(0, native.EFD_NONBLOCK);
      assert.equal(await rig.errno(Command.DEVICE_SET_IRQS, u32s(20, 0x24, index, start, count), [efd]), Errno.EINVAL);
      native.close(efd);
    }
    await settle();
    assert.equal(countOpenFds(), base, 'refused eventfds closed');
    assert.equal(await rig.errno(Command.DEVICE_GET_IRQ_INFO, u32s(16, 0, 5, 0)), Errno.EINVAL);
  } finally {
    await rig.close();
  }
});

test('DMA views stay inside their mapping; after an unmap the held view is empty and access fails', async () => {
  const rig = await startRig('memory', { ...device() }, { requireBusMaster: false, viewRevokeTimeoutMs: 50 });
  try {
    const fd = memfd(4 * PAGE, true);
    await rig.call(Command.DMA_MAP, dmaMap(3, BigInt(PAGE), 0x10000n, 2n * BigInt(PAGE)), [fd]);
    const dma = rig.ctx.dma;
    const v = dma.view(0x10000n, 2 * PAGE, { write: true });
    assert.equal(v.bytes.length, 2 * PAGE);
    v.bytes.fill(0xab);
    // The view is exactly the mapped file range: page 1..2 of the memfd.
    const all = new Uint8Array(native.mmap(fd, 0, 4 * PAGE, 1));
    assert.deepEqual([all[PAGE - 1], all[PAGE], all[3 * PAGE - 1], all[3 * PAGE]], [0, 0xab, 0xab, 0]);
    native.munmap(all.buffer as ArrayBuffer);
    for (const [iova, len] of [
      [0x10000n - 1n, 2],
      [0x10000n + 2n * BigInt(PAGE) - 1n, 2],
      [0x10000n, 2 * PAGE + 1],
      [U64_MAX, 1],
      [0n, 1],
    ] as const) {
      assert.throws(() => dma.view(iova, len), DmaError, `view ${iova}+${len}`);
      assert.throws(() => dma.readSync(iova, len), DmaError);
    }
    assert.throws(() => dma.view(0x10000n, -1), DmaError);
    assert.throws(() => dma.view(0x10000n, 1.5), DmaError);
    const r = dma.view(0x10000n, 16);
    await rig.call(Command.DMA_UNMAP, concat(u32s(24, 0), u64s(0x10000n, 2n * BigInt(PAGE))));
    // Detached: zero length, so reads and writes through it touch nothing.
    assert.equal(v.bytes.length, 0);
    assert.equal(r.bytes.length, 0);
    assert.equal(v.bytes[0], undefined);
    v.bytes[0] = 1; // a no-op on a detached buffer, not a crash
    v.release();
    assert.throws(() => dma.readSync(0x10000n, 1), (e: Error) => e instanceof DmaError && e.errno === Errno.ENOENT);
    await assert.rejects(dma.write(0x10000n, new Uint8Array(4)), DmaError);
    native.close(fd);
  } finally {
    await rig.close();
  }
});

test('a message with a reply flag, an unknown type or reserved flag bits never reaches a handler unchecked', async () => {
  const rig = await startRig('memory', device());
  try {
    const t = rig.ep.transport;
    const strays: number[] = [];
    rig.ep.setHandlers({ onStrayReply: (m) => strays.push(m.header.flags) });
    t.send(encodeMessage({ msgId: 9, command: Command.DEVICE_RESET, flags: 0x1, error: 0 }));
    t.send(encodeMessage({ msgId: 10, command: Command.DEVICE_RESET, flags: 0x2, error: 0 }));
    t.send(encodeMessage({ msgId: 11, command: Command.DEVICE_RESET, flags: 0x80000000, error: 0 }));
    await rig.call(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0));
    assert.deepEqual(strays, [0x21, 0x21], 'type 2 and reserved bits: EINVAL; a reply from the client: ignored');
  } finally {
    await rig.close();
  }
});
