// Property tests of the server's dispatcher over the in-memory transport:
// random sequences that interleave valid, invalid and mutated commands (with
// real fds attached: eventfds, memfds, sockets) against the timer and GPIO
// samples. Properties: no exception escapes; every command that wants a
// reply gets exactly one, in order, with its msg_id and command; the fds
// sent are all closed once the client is gone (process fd count back to the
// baseline); and a clean client is served correctly afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { native } from '../../src/native/binding.js';
import { countOpenFds } from '../../src/native/fds.js';
import { Command } from '../../src/protocol/commands.js';
import { decodeHeader } from '../../src/protocol/header.js';
import type { DeviceContext } from '../../src/server/context.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';
import type { Message } from '../../src/transport/types.js';
import { createGpioDevice } from '../../samples/gpio-device.js';
import { createTimerDevice } from '../../samples/timer-device.js';
import { Rng, concat, frame, genMessage, genMigrationBurst, newGenState, versionPayload, type FdSpec } from './gen.js';

const PAGE = 4096;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const u32s = (...v: number[]): Uint8Array => new Uint8Array(new Uint32Array(v).buffer);
const u64s = (...v: bigint[]): Uint8Array => new Uint8Array(new BigUint64Array(v).buffer);

const stats = { checked: 0, errors: 0 };

/** fds cheap to make in-process (no FIFOs): the rest of the kinds map onto these. */
function makeFd(s: FdSpec): number {
  switch (s.kind) {
    case 'memfd':
    case 'memfd-short':
    case 'memfd-sealed':
    case 'tmpfile': {
      const fd = native.memfdCreate('prop', s.kind === 'memfd-sealed');
      const size = Math.max(PAGE, Math.ceil((s.size ?? PAGE) / PAGE) * PAGE);
      native.ftruncate(fd, s.kind === 'memfd-short' ? size - PAGE : size);
      if (s.kind === 'memfd-sealed') native.addSeals(fd, native.F_SEAL_SHRINK | native.F_SEAL_GROW);
      return fd;
    }
    case 'socket':
    case 'pipe-r':
    case 'pipe-w':
    case 'pipe-full': {
      const [a, b] = native.socketpair();
      native.close(b);
      return a;
    }
    case 'eventfd-blocking':
      return native.eventfd(0, 0);
    default:
      return native.eventfd(0, native.EFD_NONBLOCK);
  }
}

/** A reply is due unless the message is a reply itself or says NO_REPLY. */
function replyDue(bytes: Uint8Array): { id: number; command: number } | null {
  const h = decodeHeader(bytes);
  if ((h.flags & 0xf) === 1 || h.flags & 0x10) return null;
  return { id: h.msgId, command: h.command };
}

function makeDevice(kind: 'timer' | 'gpio'): { ctx: DeviceContext; stop(): void } {
  const opts = { requestTimeoutMs: 200, callbackTimeoutMs: 500, maxDirtyBitmapSize: 1 << 20 };
  if (kind === 'timer') {
    const t = createTimerDevice({ ...opts, onDmaMismatch: () => {} });
    return { ctx: t.ctx, stop: () => t.cancelTimer() };
  }
  return { ctx: createGpioDevice(opts).ctx, stop: () => {} };
}

async function runSequence(device: 'timer' | 'gpio', seed: number, count: number, handshakeFirst: boolean, migration: boolean): Promise<void> {
  const dev = makeDevice(device);
  const { ctx } = dev;
  const baseline = countOpenFds();
  const [client, server] = createMemoryPair({ dupFd: (fd) => native.dup(fd), closeFd: (fd) => native.close(fd) });
  ctx.attach(server);
  const replies: Message[] = [];
  let closed = false;
  client.setHandlers({
    onMessage: (m) => {
      client.releaseFds(m.fds);
      if ((m.header.flags & 0xf) === 1) replies.push(m);
    },
    onClose: () => {
      closed = true;
    },
  });
  const due: { id: number; command: number }[] = [];
  const r = new Rng(seed);
  const st = newGenState();
  const inject = (bytes: Uint8Array, specs: FdSpec[]): void => {
    const fds = specs.map(makeFd);
    // injectRaw hands the fds to the server end, which owns them from now on.
    server.injectRaw(bytes, fds);
  };
  let inSync = true;
  if (handshakeFirst) {
    const v = frame(Command.VERSION, versionPayload(r.chance(0.8) ? null : r), r.int(0x10000));
    due.push(replyDue(v)!);
    inject(v, []);
  }
  const msgs = migration
    ? genMigrationBurst(r, count).map((bytes) => ({ bytes, fds: [] as FdSpec[], inSync: true }))
    : Array.from({ length: count }, () => genMessage(r, st, { maxXfer: 0x4000 }));
  for (const m of msgs) {
    if (r.chance(0.2)) {
      // Split a message across two arrivals (fds with the first piece).
      const cut = r.range(1, m.bytes.length);
      inject(m.bytes.subarray(0, cut), m.fds);
      if (cut < m.bytes.length) inject(m.bytes.subarray(cut), []);
    } else {
      inject(m.bytes, m.fds);
    }
    if (!m.inSync) {
      inSync = false;
      break;
    }
    const d = replyDue(m.bytes);
    if (d) due.push(d);
    if (r.chance(0.1)) await new Promise((res) => setImmediate(res));
  }
  // Wait for the replies (or the server closing on us).
  const end = Date.now() + 5000;
  while (!closed && replies.length < due.length && Date.now() < end) await sleep(2);
  if (inSync && !closed) assert.equal(replies.length, due.length, `replies ${replies.length} of ${due.length}`);
  assert.ok(replies.length <= due.length || !inSync, `more replies (${replies.length}) than commands (${due.length})`);
  const n = inSync ? replies.length : 0;
  stats.checked += n;
  stats.errors += replies.slice(0, n).filter((m) => m.header.flags & 0x20).length;
  for (let i = 0; i < n; i++) {
    assert.equal(replies[i]!.header.msgId, due[i]!.id, `reply ${i}: msg_id`);
    assert.equal(replies[i]!.header.command, due[i]!.command, `reply ${i}: command`);
    if (replies[i]!.header.flags & 0x20) assert.equal(replies[i]!.payload.length, 0, 'error replies are header only');
  }
  // Client gone: everything it gave the server is released.
  const gone = ctx.waitForDisconnect();
  await client.close();
  await gone;
  assert.equal(ctx.connected, false);
  assert.equal(ctx.dmaTable.count, 0, 'DMA regions dropped with the client');
  await sleep(1);
  assert.equal(countOpenFds(), baseline, 'fds back to baseline after the client left');
  // A clean client gets correct service.
  const [c2, s2] = createMemoryPair({ dupFd: (fd) => native.dup(fd), closeFd: (fd) => native.close(fd) });
  ctx.attach(s2);
  const ep = new Endpoint(c2, { requestTimeoutMs: 3000 });
  await ep.request(Command.VERSION, versionPayload(null));
  await ep.request(Command.DEVICE_RESET);
  const info = await ep.request(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0));
  assert.equal(new DataView(info.payload.buffer, info.payload.byteOffset).getUint32(8, true), 9);
  const cfg = await ep.request(Command.REGION_READ, concat(u64s(0n), u32s(7, 4)));
  assert.equal(new DataView(cfg.payload.buffer, cfg.payload.byteOffset).getUint32(16, true), device === 'timer' ? 0xbeefdead : 0x0dc8494f);
  if (device === 'timer') {
    assert.equal(ctx.migration.stateName, 'RUNNING', 'DEVICE_RESET brings migration back to RUNNING');
  }
  const gone2 = ctx.waitForDisconnect();
  await ep.close();
  await gone2;
  dev.stop();
  await ctx.close();
}

test('dispatcher: random valid/invalid/mutated sequences over the in-memory transport', { timeout: 240000 }, async () => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('timer' as const, 'gpio' as const), fc.integer(), fc.integer({ min: 1, max: 80 }), fc.boolean(), (device, seed, count, hs) =>
      runSequence(device, seed, count, hs || seed % 4 !== 0, false),
    ),
    { numRuns: 120, seed: 0x7e57 },
  );
  // The property did look at replies, successes and errors both.
  assert.ok(stats.checked > 1000 && stats.errors > 100 && stats.checked - stats.errors > 300, JSON.stringify(stats));
});

test('dispatcher: migration commands in any order, then a clean client', { timeout: 120000 }, async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer(), fc.integer({ min: 1, max: 60 }), (seed, count) => runSequence('timer', seed, count, true, true)),
    { numRuns: 60, seed: 0x313 },
  );
});
