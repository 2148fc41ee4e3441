// Device hooks and listeners that fail where no caller can take the error:
// on disconnect, on an FLR with no client attached, and while the CLI stops.
// A failure there is logged (and given to 'error' listeners), never left as
// an unhandled rejection, and never costs the next client anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { countOpenFds } from '../../src/native/fds.js';
import { Command } from '../../src/protocol/commands.js';
import { DmaMapFlags, SetIrqsFlags } from '../../src/protocol/constants.js';
import { encodeDmaMapRequest } from '../../src/protocol/dma-map.js';
import { encodeSetIrqsRequest } from '../../src/protocol/set-irqs.js';
import { DeviceContext } from '../../src/server/context.js';
import type { DeviceDescription } from '../../src/server/device.js';
import type { Logger } from '../../src/util/logger.js';
import { serveUntilDone } from '../../cli/serve.js';
import { negotiate, settle, startRig } from '../helpers/raw-client.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';

/** Collects unhandled rejections while `fn` runs (and a little after). */
async function unhandledDuring(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown): void => void seen.push(reason);
  process.on('unhandledRejection', onRejection);
  try {
    await fn();
    await settle(50);
  } finally {
    process.off('unhandledRejection', onRejection);
  }
  return seen;
}

function recordingLogger(lines: string[]): Logger {
  const rec = (level: string) => (msg: string) => void lines.push(`${level}: ${msg}`);
  return { debug: () => {}, info: () => {}, warn: rec('warn'), error: rec('error') };
}

test('a quiesce hook that throws on disconnect still drops the client\'s DMA maps and interrupt fds', { timeout: 20000 }, async () => {
  let failQuiesce = false;
  const desc: DeviceDescription = {
    vendorId: 0x1234,
    deviceId: 0x5678,
    irqs: { intx: 1, msi: 1 },
    quiesce: () => {
      if (failQuiesce) throw new Error('quiesce exploded');
    },
  };
  const lines: string[] = [];
  const rig = await startRig('socket', desc, { requireBusMaster: false, logger: recordingLogger(lines) });
  const mem = native.memfdCreate('guest', false);
  native.ftruncate(mem, 0x4000);
  const base = countOpenFds();
  try {
    const map = () =>
      rig.call(
        Command.DMA_MAP,
        encodeDmaMapRequest({ flags: DmaMapFlags.READ | DmaMapFlags.WRITE, offset: 0n, address: 0x100000n, size: 0x4000n }),
        [mem],
      );
    await map();
    const efd = native.eventfd(0, native.EFD_NONBLOCK);
    await rig.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index: 1, start: 0, count: 1 }), [efd]);
    native.close(efd);
    assert.equal(rig.ctx.dmaTable.count, 1);
    failQuiesce = true;
    await rig.ep.close();
    await rig.reconnect();
    assert.equal(rig.ctx.dmaTable.count, 0, 'DMA maps dropped');
    assert.equal(rig.ctx.irq.hasEventfd('msi', 0), false, 'interrupt fds dropped');
    assert.equal(countOpenFds(), base, 'the old client\'s fds are closed (the new connection replaces the old one)');
    assert.ok(lines.some((l) => l.startsWith('warn:') && l.includes('quiesce exploded')), 'the failure is logged');
    failQuiesce = false;
    await map(); // EEXIST if the old client's map were still there
    assert.equal(rig.ctx.dmaTable.count, 1);
  } finally {
    native.close(mem);
    await rig.close();
  }
});

test('an FLR with no client attached and a reset hook that rejects: logged, no unhandled rejection', { timeout: 20000 }, async () => {
  const lines: string[] = [];
  let resets = 0;
  const ctx = new DeviceContext(
    {
      vendorId: 0x1234,
      deviceId: 0x5678,
      express: true,
      capabilities: [{ type: 'pcie', flr: true }],
      reset: async () => {
        resets++;
        throw new Error('reset exploded');
      },
    },
    { logger: recordingLogger(lines) },
  );
  try {
    const pcie = ctx.config.findCapability(0x10)!;
    const unhandled = await unhandledDuring(async () => {
      // Device code (not a client) initiates the FLR through config space.
      ctx.config.write(pcie + 8, new Uint8Array([0x00, 0x80]));
    });
    assert.equal(resets, 1, 'the reset ran');
    assert.deepEqual(unhandled, []);
    assert.ok(lines.some((l) => l.includes('reset exploded')), 'the failure is logged');
  } finally {
    await ctx.close();
  }
});

test('a disconnect listener that throws: reported, no unhandled rejection, the next client is served', { timeout: 20000 }, async () => {
  const lines: string[] = [];
  const rig = await startRig('socket', { vendorId: 0x1234, deviceId: 0x5678 }, { logger: recordingLogger(lines) });
  const errors: Error[] = [];
  const reported = new Promise<void>((r) =>
    rig.ctx.on('error', (e) => {
      errors.push(e);
      r();
    }),
  );
  let throwOnce = true;
  rig.ctx.on('disconnect', () => {
    if (!throwOnce) return;
    throwOnce = false;
    throw new Error('listener exploded');
  });
  let next: Endpoint | null = null;
  try {
    const unhandled = await unhandledDuring(async () => {
      // A client waits in the backlog while the first one is cleaned up.
      await rig.ep.close();
      next = new Endpoint(new SocketTransport(native.connect(rig.path!)), { requestTimeoutMs: 5000 });
      await Promise.race([reported, settle(5000)]);
    });
    assert.deepEqual(unhandled, []);
    assert.deepEqual(errors.map((e) => e.message), ['listener exploded']);
    assert.ok(lines.some((l) => l.startsWith('error:') && l.includes('listener exploded')));
    // The waiting client is accepted and served.
    await negotiate(next!);
    const r = await next!.request(Command.DEVICE_GET_INFO, new Uint8Array([16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert.equal(r.payload.length, 16);
  } finally {
    await (next as Endpoint | null)?.close();
    await rig.ctx.close();
    if (rig.path) rmSync(dirname(rig.path), { recursive: true, force: true });
  }
});

test('serve: a close that fails on SIGTERM ends serving with exit code 1 and says why', { timeout: 20000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-serve-'));
  const ctx = new DeviceContext({ vendorId: 0x1234, deviceId: 0x5678 });
  const realClose = ctx.close.bind(ctx);
  // The device's close fails after doing its work (e.g. a region that cannot be unmapped).
  ctx.close = async () => {
    await realClose();
    throw new Error('close exploded');
  };
  const err: string[] = [];
  try {
    let code: number | undefined;
    const unhandled = await unhandledDuring(async () => {
      const listening = new Promise<void>((r) => ctx.once('listening', () => setImmediate(r)));
      const serving = serveUntilDone(ctx, join(dir, 's'), { exitOnDisconnect: false, err: (t) => void err.push(t) });
      await listening; // serve's signal handlers are in place from here
      process.emit('SIGTERM', 'SIGTERM');
      // Without the fix serving never resolves: a watchdog turns that into a failure.
      code = await Promise.race([serving, settle(5000).then(() => -1)]);
    });
    assert.equal(code, 1);
    assert.deepEqual(unhandled, []);
    assert.match(err.join(''), /closing .*\/s failed: close exploded/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
