// The seed demo as a test: `vfio-user server` and `vfio-user client` as two
// processes; the client exercises every command, spawns the destination
// server and migrates the device to it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../../cli/run.ts', import.meta.url));

function run(args: string[]): { done: Promise<{ code: number; out: string; err: string }>; kill: () => void } {
  const p = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return { done: new Promise((resolve) => p.on('exit', (code) => resolve({ code: code ?? 1, out, err }))), kill: () => p.kill('SIGKILL') };
}

// The source server runs on the event loop, then in the dedicated-thread mode
// (blocking receive): there the interrupt the client waits for without
// sending anything can only come from the loop watcher waking the blocked
// thread for the device's timer, and the device's DMA by message runs while
// the thread blocks for the client's replies.
for (const mode of [[], ['--dedicated-thread']]) {
  test(`sample server${mode.map((m) => ` ${m}`).join('')} + client: every command, live migration, interrupt from the destination`, { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vfu-demo-'));
    const sock = join(dir, 'dev.sock');
    const server = run(['server', ...mode, sock]);
    try {
      for (let i = 0; i < 500 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
      const client = await run(['client', sock]).done;
      assert.equal(client.code, 0, client.out + client.err);
      assert.match(client.out, /All checks passed/);
      assert.doesNotMatch(client.out, /FAIL/);
      assert.match(client.out, /interrupt programmed on the source delivered by the destination \((message and eventfd|eventfd and message)\)/);
      assert.match(client.out, /BAR1 on the destination equals the last guest write/);
      const s = await server.done;
      assert.equal(s.code, 0, `source server: ${s.err}`);
      assert.deepEqual(readdirSync(dir), [], 'both servers removed their sockets');
    } finally {
      server.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
