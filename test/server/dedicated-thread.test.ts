// The dedicated-thread mode in a server process of its own: the thread that
// serves the device waits for the client in a blocking recvmsg, so anything
// the device does from the event loop (a worker's message, setImmediate, a
// timer, a nextTick, a signal) happens only if the loop watcher interrupts
// that wait. The client sends nothing while it waits for each interrupt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VfioUserClient } from '../../src/client/index.js';

const fixture = fileURLToPath(new URL('../fixtures/dedicated-server.ts', import.meta.url));

function u64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}

async function startServer(path: string): Promise<ChildProcess> {
  const p = spawn(process.execPath, ['--import', 'tsx', fixture, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
    p.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  return p;
}

test('dedicated-thread mode: the loop still runs workers, immediates, timers, nextTicks and signals', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-dedicated-'));
  const path = join(dir, 'dev.sock');
  const server = await startServer(path);
  const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
  try {
    const client = await VfioUserClient.connect(path);
    await client.enableIrqEventfds('msi', 0, 1);
    let expected = 0;
    for (const [offset, value, what] of [
      [0, 0, 'a worker_thread message'],
      [8, 0, 'setImmediate'],
      [16, 300, 'a 300 ms timer'],
      [16, 0, 'a 0 ms timer'],
      [24, 0, 'process.nextTick'],
    ] as const) {
      await client.regionWrite(0, offset, u64(value));
      // Nothing more is sent until the interrupt arrives: the server's
      // thread sits in recvmsg the whole time.
      await client.waitForIrq('msi', 0, { timeoutMs: 5000 }).catch((e: Error) => assert.fail(`no interrupt from ${what}: ${e.message}`));
      expected++;
      const count = await client.regionRead(0, 32, 1);
      assert.equal(count[0], expected, `interrupts raised after ${what}`);
    }
    // Many requests in a row still get their replies in order.
    for (let i = 0; i < 2000; i++) {
      const r = await client.regionRead(0, 32, 1);
      assert.equal(r[0], expected);
    }
    // A signal while the thread is blocked and a client is attached: the
    // process's SIGTERM handler runs and closes cleanly.
    server.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(existsSync(path), false, 'socket file removed');
    await client.close();
  } finally {
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
