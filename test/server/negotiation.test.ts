import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from '../../src/protocol/commands.js';
import { Errno } from '../../src/protocol/errno.js';
import { decodeVersionWithCapabilities, encodeVersion } from '../../src/protocol/version.js';
import { createTimerDevice } from '../../samples/timer-device.js';
import { QEMU_11_1_3_VERSION_REQUEST_HEX, LVU_CLIENT_VERSION_JSON } from '../protocol/helpers/vectors.js';
import { startRig } from '../helpers/raw-client.js';

test("QEMU 11.1.3's exact VERSION request: reply minor 0, fits in its 198-byte buffer, limits QEMU accepts", async () => {
  // A migrating device gives the longest reply: the worst case for QEMU's buffer.
  const dev = createTimerDevice();
  const rig = await startRig('memory', dev.ctx.description, { requireBusMaster: false }, undefined, false);
  try {
    const req = Buffer.from(QEMU_11_1_3_VERSION_REQUEST_HEX, 'hex');
    assert.equal(req.length, 198);
    const r = await rig.call(Command.VERSION, new Uint8Array(req));
    assert.ok(r.payload.length <= 198, `reply of ${r.payload.length} bytes`);
    const v = decodeVersionWithCapabilities(r.payload);
    assert.deepEqual([v.major, v.minor], [0, 0]);
    const c = v.capabilities;
    assert.ok(c.maxMsgFds <= 16);
    assert.ok(c.maxDataXferSize <= 64 * 1048576);
    assert.equal(Number(c.pgsizes) % 4096, 0);
    assert.ok(c.maxDmaMaps <= 65535);
    assert.equal(c.writeMultiple, true);
    assert.equal(c.migration!.pgsize % 4096, 0);
    assert.ok((c.migration!.maxBitmapSize ?? 0) <= 268435456);
    assert.equal(c.twinSocket, undefined);
    assert.deepEqual([...c.present].sort(), ['max_data_xfer_size', 'max_dma_maps', 'max_msg_fds', 'migration', 'pgsizes', 'write_multiple']);
  } finally {
    await rig.close();
    await dev.ctx.close();
  }
});

test("libvfio-user client's VERSION: minor 2, only offered keys plus limits and migration, no twin_socket", async () => {
  const dev = createTimerDevice();
  const rig = await startRig('memory', dev.ctx.description, {}, undefined, false);
  try {
    const r = await rig.call(Command.VERSION, encodeVersion({ major: 0, minor: 2, json: LVU_CLIENT_VERSION_JSON }));
    const v = decodeVersionWithCapabilities(r.payload);
    assert.equal(v.minor, 2);
    assert.deepEqual([...v.capabilities.present].sort(), ['max_data_xfer_size', 'max_msg_fds', 'migration']);
  } finally {
    await rig.close();
    await dev.ctx.close();
  }
});

test('bad VERSION requests are refused and the connection dropped', async () => {
  for (const payload of [
    encodeVersion({ major: 1, minor: 0, json: '{}' }),
    new Uint8Array([0, 0, 0]),
    encodeVersion({ major: 0, minor: 0, json: '{"capabilities":{"max_msg_fds":"many"}}' }),
    new Uint8Array([0, 0, 0, 0, 0x7b]), // JSON without NUL
  ]) {
    const rig = await startRig('socket', { vendorId: 1, deviceId: 2 }, {}, undefined, false);
    try {
      assert.equal(await rig.errno(Command.VERSION, payload), Errno.EINVAL);
      await rig.ctx.waitForDisconnect();
    } finally {
      await rig.close();
    }
  }
});
