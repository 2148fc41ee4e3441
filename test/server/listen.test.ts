// listen() on a path another server is using: refused with EADDRINUSE naming
// the path, and the first server keeps its socket and its clients. A socket
// nobody accepts on any more (a server that died) is replaced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { DeviceContext } from '../../src/server/context.js';
import { SocketInUseError } from '../../src/server/socket-path.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import { negotiate } from '../helpers/raw-client.js';

const device = { vendorId: 0x1234, deviceId: 0x5678 };
const getInfo = new Uint8Array([16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

async function served(path: string): Promise<void> {
  const ep = new Endpoint(new SocketTransport(native.connect(path)), { requestTimeoutMs: 5000 });
  try {
    await negotiate(ep);
    assert.equal((await ep.request(Command.DEVICE_GET_INFO, getInfo)).payload.length, 16);
  } finally {
    await ep.close();
  }
}

test('a second server on a live socket is refused with EADDRINUSE naming the path; the first keeps serving', { timeout: 20000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-listen-'));
  const path = join(dir, 'dev.sock');
  const first = new DeviceContext(device);
  const second = new DeviceContext(device);
  try {
    await first.listen(path);
    // The probe is a connection that closes at once: the first server sees a client come and go.
    const probed = new Promise<void>((r) => first.once('disconnect', () => r()));
    await assert.rejects(second.listen(path), (e: unknown) => {
      assert.ok(e instanceof SocketInUseError);
      assert.equal(e.code, 'EADDRINUSE');
      assert.equal(e.path, path);
      assert.ok(e.message.includes(path), e.message);
      return true;
    });
    await probed;
    // Also while the first has a client attached (the probe is refused, not served).
    const refused = new Promise<void>((r) => first.once('refused', () => r()));
    const ep = new Endpoint(new SocketTransport(native.connect(path)), { requestTimeoutMs: 5000 });
    await negotiate(ep);
    await assert.rejects(second.listen(path), { code: 'EADDRINUSE' });
    await refused;
    assert.equal((await ep.request(Command.DEVICE_GET_INFO, getInfo)).payload.length, 16, 'the attached client is unaffected');
    await ep.close();
    await first.waitForDisconnect();
    await served(path);
    await first.close();
    assert.equal(existsSync(path), false, 'the first server removes its socket when it closes');
  } finally {
    await first.close();
    await second.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a stale socket (nobody accepts on it) is replaced; a regular file at the path is left alone', { timeout: 20000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-listen-'));
  const path = join(dir, 'dev.sock');
  const ctx = new DeviceContext(device);
  const other = new DeviceContext(device);
  try {
    // A server that died: its socket file stays, nobody listens.
    native.close(native.listen(path, 0o600, 1));
    assert.ok(existsSync(path));
    await ctx.listen(path);
    await served(path);
    const file = join(dir, 'file');
    writeFileSync(file, 'data');
    await assert.rejects(other.listen(file), (e: unknown) => e instanceof SocketInUseError && e.path === file);
    assert.equal(readFileSync(file, 'utf8'), 'data');
  } finally {
    await ctx.close();
    await other.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
