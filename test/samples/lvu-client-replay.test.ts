// Replays libvfio-user's samples/client.c message sequence (reference §6.2,
// with BAR1 0x4000 as after upstream PR #872) against our timer sample and
// checks the exact reply sizes that client relies on: it reads every reply
// with a fixed expected length and ignores msg_size. Every request (and its
// replies to our DMA requests) is the literal bytes client.c sends, written
// out below from its structs, not built with this library's encoders.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { Errno } from '../../src/protocol/errno.js';
import { decodeHeader, encodeMessage } from '../../src/protocol/header.js';
import { decodeVersionWithCapabilities } from '../../src/protocol/version.js';
import { decodeDeviceInfoReply } from '../../src/protocol/device-info.js';
import { decodeRegionInfoReply } from '../../src/protocol/region-info.js';
import { decodeRegionReadReply } from '../../src/protocol/region-access.js';
import { decodeDmaReadRequest, decodeDmaWriteRequest } from '../../src/protocol/dma-rw.js';
import { decodeMigDataReadReply } from '../../src/protocol/mig-data.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import type { Message } from '../../src/transport/types.js';
import { BAR1_SIZE, createTimerDevice, crc32 } from '../../samples/timer-device.js';
import { concatBytes } from '../../src/util/bytes.js';

const PAGE = 4096;

function u32s(...v: number[]): Uint8Array {
  const out = new Uint8Array(v.length * 4);
  const dv = new DataView(out.buffer);
  v.forEach((x, i) => dv.setUint32(i * 4, x >>> 0, true));
  return out;
}
function u64le(...v: bigint[]): Uint8Array {
  const out = new Uint8Array(v.length * 8);
  const dv = new DataView(out.buffer);
  v.forEach((x, i) => dv.setBigUint64(i * 8, x, true));
  return out;
}
const cat = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);
const now = (): bigint => BigInt(Math.floor(Date.now() / 1000));

// The requests as libvfio-user's samples/client.c builds them (structs from
// its headers, little-endian), written out byte by byte rather than with our
// encoders, so that an encoder bug cannot hide here. Only counters (an index,
// an address, a time) are filled in.
const hex = (h: string): Uint8Array => Uint8Array.from(h.replace(/\s+/g, '').match(/../g)!.map((b) => parseInt(b, 16)));
const le32 = (v: number): Uint8Array => u32s(v);
const le64 = (v: bigint): Uint8Array => u64le(v);
const ascii = (t: string): Uint8Array => Uint8Array.from(t, (c) => c.charCodeAt(0));
/** send_version: struct vfio_user_version { u16 major 0, u16 minor 2 } + the JSON and its NUL. */
const VERSION_REQ = cat(hex('0000 0200'), ascii('{"capabilities":{"max_msg_fds":32,"max_data_xfer_size":1024}}'), hex('00'));
/** map_dma_regions: struct vfio_user_dma_map { argsz 32, flags READ|WRITE, offset = addr = i pages, size 1 page }. */
const dmaMapReq = (i: number): Uint8Array => cat(hex('20000000 03000000'), le64(BigInt(i * PAGE)), le64(BigInt(i * PAGE)), hex('0010000000000000'));
/** configure_irqs: struct vfio_irq_info { argsz 16, flags 0, index i, count 0 }. */
const irqInfoReq = (i: number): Uint8Array => cat(hex('10000000 00000000'), le32(i), hex('00000000'));
/** configure_irqs: struct vfio_irq_set { argsz 20, flags DATA_EVENTFD|ACTION_TRIGGER, index 0 (INTx), start 0, count 1 }. */
const SET_IRQS_INTX_REQ = hex('14000000 24000000 00000000 00000000 01000000');
/** access_region write of BAR0: { offset 0, region 0, count 8 } + the time. */
const bar0WriteReq = (t: bigint): Uint8Array => cat(hex('0000000000000000 00000000 08000000'), le64(t));
/** set_migration_state: { argsz 16, flags SET|MIG_DEVICE_STATE } + { device_state, data_fd -1 }. */
const migStateReq = (state: number): Uint8Array => cat(hex('10000000 02000200'), le32(state), hex('ffffffff'));
/** read_migr_data: struct vfio_user_mig_data { argsz 8 + 1024, size 1024 }. */
const MIG_READ_REQ = hex('08040000 00040000');

async function waitEventfd(fd: number, timeoutMs: number): Promise<bigint> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = native.eventfdRead(fd);
    if (v > 0n) return v;
    if (Date.now() > end) throw new Error('interrupt did not arrive');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The client's guest memory: one memfd of 2N pages, region i = page i. */
interface Guest {
  fd: number;
  mem: Uint8Array;
  dmaWrites: number;
  dmaReads: number;
}

/** Serves DMA_READ/WRITE like client.c does (pread/pwrite at map.offset + addr; here iova == offset). */
function serveDma(ep: Endpoint, guest: Guest): void {
  ep.setHandlers({
    onCommand: (m: Message) => {
      if (m.header.command === Command.DMA_WRITE) {
        const r = decodeDmaWriteRequest(m.payload);
        assert.equal(r.count, 1024n, 'DMA chunked at the client max_data_xfer_size');
        assert.equal(guest.dmaReads, 0, 'all DMA_WRITEs come before the DMA_READs');
        guest.mem.set(r.data, Number(r.address));
        guest.dmaWrites++;
        // handle_dma_write_request echoes struct vfio_user_dma_region_access { addr, count }.
        ep.reply(m.header, cat(le64(r.address), le64(r.count)));
      } else if (m.header.command === Command.DMA_READ) {
        const r = decodeDmaReadRequest(m.payload);
        assert.equal(r.count, 1024n);
        guest.dmaReads++;
        const a = Number(r.address);
        // handle_dma_read_request: { addr, count } then the bytes.
        ep.reply(m.header, cat(le64(r.address), le64(r.count), guest.mem.slice(a, a + 1024)));
      } else {
        ep.replyError(m.header, Errno.ENOSYS);
      }
    },
  });
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('libvfio-user sample client sequence: exact reply sizes, DMA, dirty pages, migration to a second server', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-lvu-'));
  const src = createTimerDevice();
  const dst = createTimerDevice();
  const srcPath = join(dir, 'vfio-user.sock');
  const dstPath = srcPath + '_migrated';
  await src.ctx.listen(srcPath);
  const ep = new Endpoint(new SocketTransport(native.connect(srcPath)));
  const call = (cmd: number, payload?: Uint8Array, fds?: number[]) => ep.request(cmd, payload, fds ? { fds } : {});
  const efds: number[] = [];
  try {
    // 1. VERSION 0.2 with client.c's JSON.
    const v = await call(Command.VERSION, VERSION_REQ);
    const ver = decodeVersionWithCapabilities(v.payload);
    assert.deepEqual([ver.major, ver.minor], [0, 2]);
    assert.ok(!ver.json!.includes('twin_socket'), 'no twin_socket: client.c crashes on it');
    assert.ok(ver.capabilities.maxDataXferSize >= BAR1_SIZE);
    assert.equal(ver.capabilities.migration?.pgsize, PAGE);
    const N = ver.capabilities.maxMsgFds;

    // 2. Region 0xdeadbeef: header-only EINVAL.
    const bad = await new Promise<Message>((resolve) => {
      ep.setHandlers({ onStrayReply: resolve });
      // access_region(sock, 0xdeadbeef, false, 0, &ret, sizeof(ret)): offset 0, region 0xdeadbeef, count 4.
      ep.transport.send(encodeMessage({ msgId: 0x7777, command: Command.REGION_READ, flags: 0, error: 0 }, hex('0000000000000000 efbeadde 04000000')));
    });
    assert.deepEqual([bad.header.msgSize, bad.header.flags, bad.header.error], [16, 0x21, Errno.EINVAL]);

    // 3. GET_INFO.
    // get_device_info: argsz = sizeof(struct vfio_user_device_info) = 16, the rest 0.
    const info = decodeDeviceInfoReply((await call(Command.DEVICE_GET_INFO, hex('10000000 00000000 00000000 00000000'))).payload);
    assert.equal(info.numRegions, 9);

    // 4. GET_REGION_INFO 0..8 with argsz 32: exactly 32 bytes, no fds; BAR1 retried with 80.
    for (let i = 0; i < 9; i++) {
      // get_device_region_info: a zeroed struct vfio_region_info (32 bytes), argsz 32, index i.
      const r = await call(Command.DEVICE_GET_REGION_INFO, cat(hex('20000000 00000000'), le32(i), hex('00000000 0000000000000000 0000000000000000')));
      assert.equal(r.payload.length, 32);
      assert.equal(r.fds.length, 0);
      const ri = decodeRegionInfoReply(r.payload);
      if (ri.argsz > 32) {
        assert.equal(i, 1, 'only BAR1 has caps');
        assert.equal(ri.argsz, 80);
        // The retry sends the whole new buffer: 80 zeroed bytes with argsz 80 and the index.
        const r2 = await call(Command.DEVICE_GET_REGION_INFO, cat(hex('50000000 00000000'), le32(i), new Uint8Array(80 - 12)));
        assert.equal(r2.payload.length, 80);
        assert.equal(r2.fds.length, 1);
        native.close(r2.fds[0]!);
      }
    }

    // 5. Config space IDs.
    // access_region(sock, VFU_PCI_DEV_CFG_REGION_IDX, false, 0, &config_space, 64).
    const cfg = decodeRegionReadReply((await call(Command.REGION_READ, hex('0000000000000000 07000000 40000000'))).payload);
    assert.equal(cfg.data.length, 64);
    const cdv = new DataView(cfg.data.buffer, cfg.data.byteOffset);
    assert.deepEqual([cdv.getUint16(0, true), cdv.getUint16(2, true), cdv.getUint16(0x2c, true), cdv.getUint16(0x2e, true)], [0xdead, 0xbeef, 0xcafe, 0xbabe]);

    // 6. DEVICE_RESET: header-only reply.
    assert.equal((await call(Command.DEVICE_RESET)).header.msgSize, 16);

    // 7. DMA_MAP x 2N, one fd each, iova = offset = i pages.
    const guest: Guest = { fd: native.memfdCreate('client-dma', false), mem: new Uint8Array(0), dmaWrites: 0, dmaReads: 0 };
    native.ftruncate(guest.fd, 2 * N * PAGE);
    guest.mem = new Uint8Array(native.mmap(guest.fd, 0, 2 * N * PAGE, 3));
    for (let i = 0; i < 2 * N; i++) {
      const r = await call(Command.DMA_MAP, dmaMapReq(i), [guest.fd]);
      assert.equal(r.header.msgSize, 16);
    }
    serveDma(ep, guest);

    // 8. GET_IRQ_INFO x5, SET_IRQS INTx with an eventfd.
    for (let i = 0; i < 5; i++) assert.equal((await call(Command.DEVICE_GET_IRQ_INFO, irqInfoReq(i))).payload.length, 16);
    efds.push(native.eventfd(0, native.EFD_NONBLOCK));
    assert.equal((await call(Command.DEVICE_SET_IRQS, SET_IRQS_INTX_REQ, [efds[0]!])).header.msgSize, 16);

    // 9. Dirty logging on: 24-byte echo.
    // argsz 24, flags SET|DMA_LOGGING_START, page_size 4096, num_ranges 0, reserved 0.
    const startPayload = hex('18000000 06000200 0010000000000000 00000000 00000000');
    assert.deepEqual((await call(Command.DEVICE_FEATURE, startPayload)).payload, startPayload);

    // 10. Program the timer one second ahead.
    assert.equal((await call(Command.REGION_WRITE, bar0WriteReq(now() + 1n))).payload.length, 16);
    assert.equal((await call(Command.REGION_READ, hex('0000000000000000 00000000 08000000'))).payload.length, 24);

    // 11-12. The interrupt, then 4 DMA_WRITE and 4 DMA_READ messages.
    await waitEventfd(efds[0]!, 5000);
    await waitFor(() => guest.dmaReads === 4, 5000);
    assert.equal(guest.dmaWrites, 4);
    assert.deepEqual([0, 1024, 2048, 3072].map((o) => guest.mem[o]), [0x41, 0x42, 0x43, 0x44], 'message DMA into region 0');
    assert.deepEqual([0, 1024, 2048, 3072].map((o) => guest.mem[PAGE + o]), [0x41, 0x42, 0x43, 0x44], 'direct DMA into region 1');

    // 13. REPORT per region: 40-byte replies; region 1 dirty in the server bitmap, region 0 not (the client tracks message DMA).
    for (let i = 0; i < 2 * N; i++) {
      // argsz 40 (8 + 24 + an 8-byte bitmap), flags GET|DMA_LOGGING_REPORT, iova, length, page_size; only the first 32 bytes are sent.
      const r = await call(Command.DEVICE_FEATURE, cat(hex('28000000 08000100'), le64(BigInt(i * PAGE)), hex('0010000000000000 0010000000000000')));
      assert.equal(r.payload.length, 40);
      assert.equal(r.payload[32], i === 1 ? 1 : 0, `region ${i} dirty bit`);
    }

    // 14. Logging off (payload = the START struct): 24-byte echo.
    const stopPayload = hex('18000000 07000200 0010000000000000 00000000 00000000');
    assert.deepEqual((await call(Command.DEVICE_FEATURE, stopPayload)).payload, stopPayload);

    // 15. Unmap regions 0..N-1: 24-byte echoes.
    for (let i = 0; i < N; i++) {
      // struct vfio_user_dma_unmap: argsz 24, flags 0, addr, size.
      const req = cat(hex('18000000 00000000'), le64(BigInt(i * PAGE)), hex('0010000000000000'));
      assert.deepEqual((await call(Command.DMA_UNMAP, req)).payload, req);
    }

    // 16. Program the source timer (cancelled by STOP_COPY below).
    await call(Command.REGION_WRITE, bar0WriteReq(now() + 2n));

    // 17. migrate_from: PRE_COPY, 16 non-empty 1032-byte reads, a fake guest writing BAR1.
    const preCopy = migStateReq(6);
    assert.deepEqual((await call(Command.DEVICE_FEATURE, preCopy)).payload, preCopy);
    let lastGuest = new Uint8Array(BAR1_SIZE);
    let reads = 0;
    for (;;) {
      const g = Uint8Array.from({ length: BAR1_SIZE }, () => (Math.random() * 256) | 0);
      assert.equal((await call(Command.REGION_WRITE, cat(hex('0000000000000000 01000000 00400000'), g))).payload.length, 16);
      lastGuest = g;
      const r = await call(Command.MIG_DATA_READ, MIG_READ_REQ);
      assert.equal(r.payload.length, 1032);
      if (decodeMigDataReadReply(r.payload).size === 0) break;
      reads++;
    }
    assert.equal(reads, 16);
    const stopCopy = migStateReq(3);
    assert.deepEqual((await call(Command.DEVICE_FEATURE, stopCopy)).payload, stopCopy);
    const stream: Uint8Array[] = [];
    for (;;) {
      const r = await call(Command.MIG_DATA_READ, MIG_READ_REQ);
      assert.equal(r.payload.length, 1032, 'padded to the requested size, also the last, short one');
      const d = decodeMigDataReadReply(r.payload);
      if (d.size === 0) break;
      stream.push(d.data);
    }
    assert.deepEqual(stream.map((c) => c.length), [...new Array<number>(16).fill(1024), 8]);
    const stop = migStateReq(1);
    assert.deepEqual((await call(Command.DEVICE_FEATURE, stop)).payload, stop);

    // 18-21. Destination: RESUMING, 17 writes, STOP, check BAR1, RUNNING.
    await dst.ctx.listen(dstPath);
    const ep2 = new Endpoint(new SocketTransport(native.connect(dstPath)));
    const call2 = (cmd: number, payload?: Uint8Array, fds?: number[]) => ep2.request(cmd, payload, fds ? { fds } : {});
    await call2(Command.VERSION, VERSION_REQ);
    const resuming = migStateReq(4);
    assert.deepEqual((await call2(Command.DEVICE_FEATURE, resuming)).payload, resuming);
    // struct vfio_user_mig_data: argsz 8 + len, size len, then the bytes.
    for (const c of stream) assert.equal((await call2(Command.MIG_DATA_WRITE, cat(le32(8 + c.length), le32(c.length), c))).header.msgSize, 16);
    assert.deepEqual((await call2(Command.DEVICE_FEATURE, stop)).payload, stop);
    const bar1 = decodeRegionReadReply((await call2(Command.REGION_READ, hex('0000000000000000 01000000 00400000'))).payload).data;
    assert.equal(crc32(bar1), crc32(lastGuest), 'BAR1 arrived intact');
    const running = migStateReq(2);
    assert.deepEqual((await call2(Command.DEVICE_FEATURE, running)).payload, running);

    // 22-23. Map the other N regions, INTx, and the interrupt programmed on the source fires here.
    for (let i = N; i < 2 * N; i++) {
      await call2(Command.DMA_MAP, dmaMapReq(i), [guest.fd]);
    }
    guest.dmaReads = 0;
    guest.dmaWrites = 0;
    serveDma(ep2, guest);
    for (let i = 0; i < 5; i++) await call2(Command.DEVICE_GET_IRQ_INFO, irqInfoReq(i));
    efds.push(native.eventfd(0, native.EFD_NONBLOCK));
    await call2(Command.DEVICE_SET_IRQS, SET_IRQS_INTX_REQ, [efds[1]!]);
    assert.equal(native.eventfdRead(efds[0]!), -1n, 'the source did not fire after STOP_COPY');
    await waitEventfd(efds[1]!, 6000);
    await waitFor(() => guest.dmaReads === 4, 5000);
    assert.equal(guest.mem[(N + 1) * PAGE], 0x41, 'direct DMA on the destination into its slot 1');

    // 24. Unmap all: 24-byte echo.
    // argsz 24, flags VFIO_DMA_UNMAP_FLAG_ALL (2), addr 0, size 0.
    const all = hex('18000000 02000000 0000000000000000 0000000000000000');
    const u = await call2(Command.DMA_UNMAP, all);
    assert.equal(decodeHeader(encodeMessage({ msgId: 0, command: 3, flags: 1, error: 0 }, u.payload)).msgSize, 40);
    await ep2.close();
    native.munmap(guest.mem.buffer as ArrayBuffer);
    native.close(guest.fd);
  } finally {
    for (const fd of efds) native.close(fd);
    await ep.close();
    await src.ctx.close();
    await dst.ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
