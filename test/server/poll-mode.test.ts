import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { encodeDeviceInfoRequest } from '../../src/protocol/device-info.js';
import { encodeRegionReadRequest } from '../../src/protocol/region-access.js';
import { DeviceContext } from '../../src/server/context.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import { negotiate, settle } from '../helpers/raw-client.js';

test('polling mode: nothing happens without poll(); each poll() handles at most one message', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-poll-'));
  const path = join(dir, 's');
  const ctx = new DeviceContext({ vendorId: 1, deviceId: 2, regions: { 0: { size: 16, read: (o, n) => new Uint8Array(n).fill(o) } } });
  await ctx.listen(path, { poll: true });
  const ep = new Endpoint(new SocketTransport(native.connect(path)));
  try {
    let replied = false;
    const version = negotiate(ep).then((m) => {
      replied = true;
      return m;
    });
    await settle(50);
    assert.equal(ctx.connected, false, 'not even accepted before poll()');
    assert.equal(ctx.poll(), 0, 'accepting is not a message');
    await settle(50);
    assert.equal(replied, false);
    assert.equal(ctx.poll(), 1);
    await version;
    // Three pipelined requests need exactly three polls that return 1.
    const pending = [0, 1, 2].map((i) => ep.request(Command.REGION_READ, encodeRegionReadRequest({ offset: BigInt(i), region: 0, count: 1 })));
    const results: number[] = [];
    await settle(50);
    for (let i = 0; i < 10 && results.filter((r) => r === 1).length < 3; i++) {
      results.push(ctx.poll());
      await settle(5);
    }
    assert.deepEqual(results.filter((r) => r === 1).length, 3);
    assert.ok(results.every((r) => r === 0 || r === 1));
    await Promise.all(pending);
    assert.equal(ctx.poll(), 0, 'nothing left');
    await ep.request(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest({ argsz: 16 }), { timeoutMs: 100 }).then(
      () => assert.fail('answered without poll'),
      (e: Error) => assert.equal((e as { code?: string }).code, 'ERR_VFIO_USER_TIMEOUT'),
    );
  } finally {
    await ep.close();
    for (let i = 0; i < 20; i++) {
      ctx.poll();
      await settle(5);
    }
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
