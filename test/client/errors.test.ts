// Errors name what they are about: connect/bind/listen errors carry the
// socket path (and say when what is there is not a socket), a client turned
// away because another is attached is told so, and error replies from the
// peer name the command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../cli/main.js';
import { ClientError, ClientErrorCode, VfioUserClient } from '../../src/client/index.js';
import { native } from '../../src/native/binding.js';
import { Errno } from '../../src/protocol/errno.js';
import { RemoteError } from '../../src/protocol/errors.js';
import { DeviceContext } from '../../src/server/context.js';
import { sampleDevice, startRig } from './rig.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-user-errors-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type PathError = Error & { code: string; syscall: string; path: string };

test('connect errors carry the path; a regular file or a directory is said not to be a socket', async (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'missing.sock');
  await assert.rejects(VfioUserClient.connect(missing), (e: PathError) => {
    assert.equal(e.message, `connect ${missing}: ENOENT (No such file or directory)`);
    assert.equal(e.code, 'ENOENT');
    assert.equal(e.syscall, 'connect');
    assert.equal(e.path, missing);
    return true;
  });
  const file = join(dir, 'plain-file');
  writeFileSync(file, 'not a socket');
  await assert.rejects(VfioUserClient.connect(file), (e: PathError) => {
    assert.match(e.message, new RegExp(`^connect ${file}: ECONNREFUSED \\(Connection refused\\): the path is a regular file, not a socket$`));
    assert.equal(e.path, file);
    return true;
  });
  assert.throws(() => native.connect(dir), /the path is a directory, not a socket/);
});

test('listen errors carry the path, and say what is in the way', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'plain-file');
  writeFileSync(file, 'x');
  const ctx = new DeviceContext(sampleDevice());
  // listen() looks before it binds (SocketInUseError); either way the message names the path and the file.
  await assert.rejects(ctx.listen(file), (e: PathError) => {
    assert.equal(e.code, 'EADDRINUSE');
    assert.ok(e.message.includes(file), e.message);
    assert.match(e.message, /not a socket/);
    return true;
  });
  assert.throws(() => native.listen(file, 0o600, 1), (e: PathError) => e.message === `bind ${file}: EADDRINUSE (Address already in use): the path is a regular file, not a socket` && e.path === file);
  const noDir = join(dir, 'no', 'such', 'dev.sock');
  await assert.rejects(ctx.listen(noDir), (e: PathError) => e.code === 'ENOENT' && e.message.includes(noDir));
  mkdirSync(join(dir, 'sub'));
  await assert.rejects(ctx.listen(join(dir, 'sub')), /not a socket/);
  await ctx.close();
});

test('vfio-user probe on a regular file says it is not a socket', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'plain-file');
  writeFileSync(file, 'x');
  let err = '';
  assert.equal(await main(['probe', file], { out: () => {}, err: (s) => void (err += s) }), 1);
  assert.equal(err, `vfio-user probe: connect ${file}: ECONNREFUSED (Connection refused): the path is a regular file, not a socket\n`);
});

test('a client turned away because another is attached is told so, with the path', async () => {
  const rig = await startRig('socket');
  try {
    await assert.rejects(VfioUserClient.connect(rig.path!), (e: ClientError) => {
      assert.ok(e instanceof ClientError);
      assert.equal(e.code, ClientErrorCode.REFUSED);
      assert.equal(e.message, `${rig.path}: the server refused the connection: another client is attached (EBUSY)`);
      assert.ok(e.cause instanceof RemoteError && e.cause.errno === Errno.EBUSY);
      return true;
    });
    // The first client is unharmed.
    assert.equal((await rig.client.getDeviceInfo()).numRegions, 9);
  } finally {
    await rig.close();
  }
});

test('a uid the server does not allow is told so', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'dev.sock');
  const ctx = new DeviceContext(sampleDevice(), { allowedUids: [process.getuid!() + 1] });
  await ctx.listen(path);
  try {
    await assert.rejects(VfioUserClient.connect(path), (e: ClientError) => {
      assert.equal(e.code, ClientErrorCode.REFUSED);
      assert.equal(e.message, `${path}: the server refused the connection: this user is not allowed (EACCES)`);
      return true;
    });
  } finally {
    await ctx.close();
  }
});

test('error replies from the peer name the command, not its number', async () => {
  const rig = await startRig('memory');
  try {
    await assert.rejects(rig.client.regionRead(5, 0, 4), (e: RemoteError) => {
      assert.ok(e instanceof RemoteError);
      assert.equal(e.message, 'peer refused REGION_READ: EINVAL');
      assert.equal(e.command, 9);
      return true;
    });
    await assert.rejects(rig.client.dmaUnmap(0x100000, 0x1000), /^RemoteError: peer refused DMA_UNMAP: ENOENT$/);
  } finally {
    await rig.close();
  }
});
