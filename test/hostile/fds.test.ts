// Hostile fds. Region memfds we hand out are sealed against shrinking and
// growing. DMA fds are checked: type (files and memfds; block devices,
// sockets, pipes, eventfds and directories are refused), size (the file must
// cover the mapping). Interrupt fds must be eventfds (a pipe is refused), and
// they are left in the blocking mode the client gave them: the flag lives in
// the file description the client shares, and libvfio-user's sample client
// reads its irqfd blocking. A blocking eventfd whose counter is at its
// maximum is not written (poll says it would block), so it cannot hang the
// event loop either.
//
// Residual risk, documented rather than handled: an *unsealed* DMA memfd or
// file that the client truncates after DMA_MAP makes the next device access
// to the lost pages raise SIGBUS, which kills the server (Node cannot recover
// from it in JS code that touches mapped memory directly). QEMU's memfd
// backend seals by default (F_SEAL_GROW|F_SEAL_SHRINK), its file and shm
// backends cannot be sealed; a client that can truncate its own guest
// memory file can only crash its own device server. The last test shows the
// behaviour in a child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, closeSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { countOpenFds } from '../../src/native/fds.js';
import { Command } from '../../src/protocol/commands.js';
import { Errno } from '../../src/protocol/errno.js';
import { startRig, settle } from '../helpers/raw-client.js';
import { createTimerDevice } from '../../samples/timer-device.js';
import { concat, versionPayload } from '../fuzz/gen.js';
import { ServerProc } from '../fuzz/campaign.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';

const PAGE = 4096;
const u32s = (...v: number[]): Uint8Array => new Uint8Array(new Uint32Array(v.map((x) => x >>> 0)).buffer);
const u64s = (...v: bigint[]): Uint8Array => new Uint8Array(new BigUint64Array(v).buffer);
const dmaMap = (offset: bigint, iova: bigint, size: bigint): Uint8Array => concat(u32s(32, 3), u64s(offset, iova, size));

test('region memfds we hand out are sealed: the client can neither shrink nor grow them', async () => {
  const dev = createTimerDevice();
  const rig = await startRig('socket', dev.ctx.description);
  try {
    const r = await rig.call(Command.DEVICE_GET_REGION_INFO, u32s(80, 0, 1, 0, 0, 0, 0, 0));
    assert.equal(r.fds.length, 1);
    const fd = r.fds[0]!;
    const seals = native.getSeals(fd);
    for (const s of [native.F_SEAL_SHRINK, native.F_SEAL_GROW, native.F_SEAL_SEAL]) assert.ok(seals & s, `seal ${s} set`);
    assert.throws(() => native.ftruncate(fd, 0), /EPERM/);
    assert.throws(() => native.ftruncate(fd, 1 << 20), /EPERM/);
    assert.throws(() => native.addSeals(fd, native.F_SEAL_WRITE), /EPERM/, 'nor seal it against the device');
    native.close(fd);
  } finally {
    await rig.close();
    await dev.ctx.close();
  }
});

test('DMA fds: anything but a file or memfd covering the map is refused, and every refused fd is closed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-fds-'));
  const rig = await startRig('socket', createTimerDevice().ctx.description, { requireBusMaster: false });
  try {
    await settle();
    const base = countOpenFds();
    const [s1, s2] = native.socketpair();
    const cases: [string, number][] = [
      ['eventfd', native.eventfd(0, native.EFD_NONBLOCK)],
      ['socket', s1],
      ['directory', openSync(dir, 'r')],
      ['/dev/null', openSync('/dev/null', 'r+')],
    ];
    for (const [what, fd] of cases) {
      const errno = await rig.errno(Command.DMA_MAP, dmaMap(0n, 0x10000n, BigInt(PAGE)), [fd]);
      assert.ok(errno > 0, `${what} refused`);
      native.close(fd);
    }
    native.close(s2);
    const short = native.memfdCreate('short', true);
    native.ftruncate(short, PAGE);
    assert.equal(await rig.errno(Command.DMA_MAP, dmaMap(0n, 0x10000n, 2n * BigInt(PAGE)), [short]), Errno.EINVAL);
    assert.equal(await rig.errno(Command.DMA_MAP, dmaMap(BigInt(PAGE), 0x10000n, BigInt(PAGE)), [short]), Errno.EINVAL);
    native.close(short);
    await settle();
    assert.equal(countOpenFds(), base, 'refused DMA fds closed');
    assert.equal(rig.ctx.dmaTable.count, 0);
    // A sealed memfd that covers the map: accepted, and released on unmap.
    const good = native.memfdCreate('good', true);
    native.ftruncate(good, 2 * PAGE);
    native.addSeals(good, native.F_SEAL_SHRINK | native.F_SEAL_GROW);
    await rig.call(Command.DMA_MAP, dmaMap(BigInt(PAGE), 0x10000n, BigInt(PAGE)), [good]);
    native.close(good);
    await rig.call(Command.DMA_UNMAP, concat(u32s(24, 0), u64s(0x10000n, BigInt(PAGE))));
    await settle();
    assert.equal(countOpenFds(), base);
    // An unlinked regular file works too (QEMU's file backend).
    const p = join(dir, 'guest');
    const f = openSync(p, 'w+');
    native.ftruncate(f, PAGE);
    rmSync(p);
    await rig.call(Command.DMA_MAP, dmaMap(0n, 0x20000n, BigInt(PAGE)), [f]);
    closeSync(f);
  } finally {
    await rig.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('interrupt fds: a blocking eventfd at its maximum is accepted, left blocking and skipped; a full blocking pipe is refused; the server never hangs', { timeout: 60000 }, async () => {
  // The server runs in its own process: a hang there must not hang the test.
  const dir = mkdtempSync(join(tmpdir(), 'vfu-irq-'));
  const server = new ServerProc(dir, {});
  const fifo = join(dir, 'p');
  spawnSync('mkfifo', [fifo]);
  const keep = openSync(fifo, 'r+');
  try {
    await server.ready();
    native.setNonBlocking(keep, true);
    const chunk = new Uint8Array(65536);
    for (;;) {
      try {
        writeSync(keep, chunk);
      } catch {
        break;
      }
    }
    const full = (): number => {
      // Counter at 2^64 - 2 on a blocking eventfd: a blocking write of 1 would sleep forever.
      const fd = native.eventfd(0, 0);
      native.setNonBlocking(fd, true);
      native.eventfdWrite(fd, 0xfffffffffffffffen);
      native.setNonBlocking(fd, false);
      return fd;
    };
    for (const [what, make] of [
      ['eventfd at its maximum', full],
      ['full blocking pipe', () => openSync(fifo, 'r+')],
    ] as const) {
      const ep = new Endpoint(new SocketTransport(native.connect(server.timer)), { requestTimeoutMs: 3000 });
      await ep.request(Command.VERSION, versionPayload(null));
      const fd = make();
      const isEventfd = what.startsWith('eventfd');
      let errno = 0;
      try {
        await ep.request(Command.DEVICE_SET_IRQS, u32s(20, 0x24, 0, 0, 1), { fds: [fd] });
      } catch (e) {
        errno = (e as { errno?: number }).errno ?? -1;
      }
      const accepted = errno === 0;
      if (isEventfd) {
        assert.equal(errno, 0, 'a blocking eventfd is accepted');
        // The server shares our file description: had it switched the fd to non-blocking, we would see it.
        assert.equal(native.isNonBlocking(fd), false, 'the server left the interrupt fd blocking');
      } else {
        assert.equal(errno, Errno.EINVAL, 'a pipe is refused: interrupt fds must be eventfds');
      }
      // Fire the timer now: the device raises INTx on that fd.
      const now = BigInt(Math.floor(Date.now() / 1000));
      await ep.request(Command.REGION_WRITE, concat(u64s(0n), u32s(0, 8), u64s(now - 1n)));
      await new Promise((r) => setTimeout(r, 300));
      const info = await ep.request(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0));
      assert.equal(info.payload.length, 16, `server answers after INTx on a ${what} (${accepted ? 'accepted' : 'refused'})`);
      if (isEventfd) assert.equal(native.isNonBlocking(fd), false, 'still blocking after the interrupt');
      native.close(fd);
      await ep.close();
      await server.settled('timer', 5000).catch(() => {});
    }
  } finally {
    closeSync(keep);
    await server.stop();
    assert.equal(server.exited?.code, 0, `server exit ${JSON.stringify(server.exited)}: ${server.stderr}`);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('residual risk (documented): an unsealed DMA memfd truncated by the client after the map kills the server with SIGBUS on access', () => {
  // In a child: this ends the process.
  const code = `
    import { native } from './src/native/binding.ts';
    import { DmaTable } from './src/server/dma-table.ts';
    const t = new DmaTable({ maxRegions: 4, pageSize: 4096 });
    const fd = native.memfdCreate('unsealed', true);
    native.ftruncate(fd, 8192);
    const r = t.add({ iova: 0n, size: 8192n, offset: 0n, readable: true, writable: true, fd: native.dup(fd) });
    r.bytes(0, 8192)[4096] = 1;
    native.ftruncate(fd, 0); // what a hostile client can do to an unsealed fd
    process.stdout.write('before\\n');
    r.bytes(0, 8192)[4096] = 2;
    process.stdout.write('after\\n');
  `;
  const res = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', cwd: new URL('../..', import.meta.url).pathname });
  assert.match(res.stdout, /before/);
  assert.doesNotMatch(res.stdout, /after/);
  assert.equal(res.signal, 'SIGBUS');
});
