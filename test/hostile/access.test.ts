// Socket access: the socket file is created 0600 (configurable), a second
// concurrent client is refused (its first request gets an EBUSY error reply,
// then the connection closes; one that sends nothing is closed within a
// second; plus an event and a log line) while the first is served on, and
// allowedUids restricts clients by SO_PEERCRED (EACCES) with the refusal logged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { Errno } from '../../src/protocol/errno.js';
import { DeviceContext } from '../../src/server/context.js';
import type { ServerOptions } from '../../src/server/options.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import type { Logger } from '../../src/util/logger.js';
import { versionPayload } from '../fuzz/gen.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const u32s = (...v: number[]): Uint8Array => new Uint8Array(new Uint32Array(v).buffer);

async function withServer(opts: ServerOptions, fn: (ctx: DeviceContext, path: string, logs: string[]) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-acc-'));
  const logs: string[] = [];
  const logger: Logger = { debug: () => {}, info: () => {}, warn: (m) => logs.push(`warn: ${m}`), error: (m) => logs.push(`error: ${m}`) };
  const ctx = new DeviceContext({ vendorId: 1, deviceId: 2 }, { ...opts, logger });
  const path = join(dir, 'dev.sock');
  await ctx.listen(path);
  try {
    await fn(ctx, path, logs);
  } finally {
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Reads until EOF (true) or until ms pass (false); fails on data. */
async function expectPlainClose(fd: number, ms: number): Promise<boolean> {
  const buf = new Uint8Array(64);
  const out = new Int32Array(4);
  const end = Date.now() + ms;
  while (Date.now() < end) {
    let n: number;
    try {
      n = native.recvmsg(fd, buf, 0, buf.length, out);
    } catch {
      return true; // ECONNRESET: closed too
    }
    if (n === 0) return true;
    assert.ok(n < 0, 'a refused client receives nothing');
    await sleep(5);
  }
  return false;
}

test('the socket file is 0600 by default and takes socketMode', async () => {
  const old = process.umask(0);
  try {
    await withServer({}, async (_ctx, path) => {
      assert.equal(statSync(path).mode & 0o777, 0o600);
    });
    await withServer({ socketMode: 0o660 }, async (_ctx, path) => {
      assert.equal(statSync(path).mode & 0o777, 0o660);
    });
  } finally {
    process.umask(old);
  }
  // A umask cannot widen it either.
  const old2 = process.umask(0o077);
  try {
    await withServer({ socketMode: 0o660 }, async (_ctx, path) => assert.equal(statSync(path).mode & 0o777, 0o660));
  } finally {
    process.umask(old2);
  }
});

test('a second concurrent client is refused cleanly; the first is served on; the next one after it is accepted', async () => {
  await withServer({}, async (ctx, path, logs) => {
    const refusals: string[] = [];
    ctx.on('refused', (r) => refusals.push(r));
    const first = new Endpoint(new SocketTransport(native.connect(path)));
    await first.request(Command.VERSION, versionPayload(null));
    const second = native.connect(path);
    assert.equal(await expectPlainClose(second, 3000), true, 'a second client that sends nothing is closed');
    native.close(second);
    assert.equal(refusals.length, 1);
    // One that asks is told why: VERSION gets an EBUSY error reply, then EOF.
    const asking = new Endpoint(new SocketTransport(native.connect(path)));
    await assert.rejects(asking.request(Command.VERSION, versionPayload(null)), (e: Error) => (e as { errno?: number }).errno === Errno.EBUSY && /peer refused VERSION: EBUSY/.test(e.message));
    await asking.close();
    assert.equal(refusals.length, 2);
    assert.match(refusals[0]!, /already attached/);
    assert.ok(logs.some((l) => /refused connection: a client is already attached/.test(l)), logs.join('\n'));
    const info = await first.request(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0));
    assert.equal(info.payload.length, 16);
    const gone = ctx.waitForDisconnect();
    await first.close();
    await gone;
    const third = new Endpoint(new SocketTransport(native.connect(path)));
    await third.request(Command.VERSION, versionPayload(null));
    await third.request(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0));
    await third.close();
  });
});

test('allowedUids: a uid not listed is refused (SO_PEERCRED) and logged; a listed one is served', async () => {
  const uid = process.getuid!();
  await withServer({ allowedUids: [uid + 1] }, async (ctx, path, logs) => {
    const refusals: string[] = [];
    ctx.on('refused', (r) => refusals.push(r));
    const fd = native.connect(path);
    assert.equal(await expectPlainClose(fd, 3000), true);
    native.close(fd);
    const asking = new Endpoint(new SocketTransport(native.connect(path)));
    await assert.rejects(asking.request(Command.VERSION, versionPayload(null)), (e: Error) => (e as { errno?: number }).errno === Errno.EACCES);
    await asking.close();
    assert.match(refusals[0] ?? '', new RegExp(`uid ${uid} \\(pid ${process.pid}\\) not allowed`));
    assert.ok(logs.some((l) => l.includes(`uid ${uid}`) && l.includes('not allowed')), logs.join('\n'));
    assert.equal(ctx.connected, false);
  });
  await withServer({ allowedUids: [uid] }, async (_ctx, path) => {
    const ep = new Endpoint(new SocketTransport(native.connect(path)));
    await ep.request(Command.VERSION, versionPayload(null));
    await ep.close();
  });
});

test('a client that connects and vanishes before it is accepted does not disturb the server', async () => {
  await withServer({ allowedUids: [process.getuid!()] }, async (_ctx, path) => {
    // (In-process server: yield between connects, or a full backlog would block connect() forever.)
    for (let i = 0; i < 20; i++) {
      native.close(native.connect(path));
      await sleep(2);
    }
    await sleep(50);
    const ep = new Endpoint(new SocketTransport(native.connect(path)));
    await ep.request(Command.VERSION, versionPayload(null));
    await ep.close();
  });
});
