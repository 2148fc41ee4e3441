import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceContext } from '../../src/server/context.js';
import { main } from '../../cli/main.js';
import { root, run as runChild, type Run } from '../install/tools.js';
import { sampleDevice, tempSocketPath } from './rig.js';

const bin = join(root, 'bin', 'vfio-user.js');

/** `vfio-user ARGS` to completion; a run past `watchdogMs` is killed and fails the test. */
const run = (args: string[], watchdogMs = 20000): Promise<Run> => runChild(process.execPath, [bin, ...args], { cwd: root, watchdogMs });

async function withServer(fn: (path: string, ctx: DeviceContext) => Promise<void>): Promise<void> {
  const ctx = new DeviceContext(sampleDevice());
  const { path, cleanup } = tempSocketPath();
  await ctx.listen(path);
  try {
    await fn(path, ctx);
  } finally {
    await ctx.close();
    cleanup();
  }
}

test('probe prints IDs, regions, IRQs and decoded config space, and disconnects', async () => {
  await withServer(async (path, ctx) => {
    let disconnects = 0;
    ctx.on('disconnect', () => disconnects++);
    const r = await run(['probe', path]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /Device dead:beef/);
    assert.match(r.stdout, /Subsystem: cafe:babe/);
    assert.match(r.stdout, /^ {3}0 BAR0 +size 0x1000 .*flags R W$/m);
    assert.match(r.stdout, /^ {3}1 BAR1 +size 0x4000 .*flags R W MMAP$/m);
    assert.match(r.stdout, /mmap: 0x0-0xfff \[4K\], 0x2000-0x3fff \[8K\]/);
    assert.match(r.stdout, /^ {3}7 CONFIG +size 0x100 /m);
    assert.match(r.stdout, /^ {3}2 BAR2 +\(not implemented\)/m);
    assert.match(r.stdout, /^ {3}1 MSI +count 4 /m);
    assert.match(r.stdout, /Region 1: Memory \(32-bit, non-prefetchable\) \[size=16K\]/);
    for (let i = 0; i < 50 && disconnects === 0; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(disconnects, 1, 'the server saw the client go');
    assert.equal(ctx.connected, false);
  });
});

test('probe --json prints one parsable object', async () => {
  await withServer(async (path) => {
    const r = await run(['-v', 'probe', path, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.socket, path);
    assert.deepEqual(j.protocol.major, 0);
    assert.equal(j.device.numRegions, 9);
    assert.equal(j.regions.length, 9);
    assert.deepEqual(j.regions[1].mmapAreas, [
      { offset: 0, size: 0x1000 },
      { offset: 0x2000, size: 0x2000 },
    ]);
    assert.deepEqual(j.regions[1].flagNames, ['READ', 'WRITE', 'MMAP', 'CAPS']);
    assert.equal(j.irqs[1].count, 4);
    assert.equal(j.config.vendorId, 0xdead);
    assert.equal(j.config.deviceId, 0xbeef);
    assert.equal(j.config.bytes.length, 512);
    assert.equal(j.config.decoded.bars[1].size, 0x4000);
    assert.match(r.stderr, /negotiated 0\.2/, '-v logs to stderr');
  });
});

test('probe errors: no server, usage', async () => {
  const { path, cleanup } = tempSocketPath();
  try {
    const r = await run(['probe', path]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /vfio-user probe: connect \S+: ENOENT/);
  } finally {
    cleanup();
  }
  const u = await run(['probe']);
  assert.equal(u.code, 2);
  assert.match(u.stderr, /missing SOCKET/);
});

test('main: help lists implemented commands; unknown commands fail', async () => {
  let out = '';
  let err = '';
  const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s) };
  assert.equal(await main(['--help'], io), 0);
  assert.match(out, /^ {2}probe {2}/m);
  assert.equal(await main(['nosuch'], io), 2);
  assert.match(err, /unknown command 'nosuch'/);
  assert.equal(await main([], io), 2);
  out = '';
  assert.equal(await main(['probe', '--help'], io), 0);
  assert.match(out, /usage: vfio-user probe/);
  err = '';
  assert.equal(await main(['probe', 'a', 'b'], io), 2);
  assert.match(err, /unexpected argument b/);
});
