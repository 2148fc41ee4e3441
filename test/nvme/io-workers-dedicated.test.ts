// `vfio-user nvme --dedicated-thread --io-workers 2` in its own process: the
// controller's thread blocks in recvmsg between messages while the workers
// serve the I/O queues, so doorbells reach them through shared memory alone
// and their messages (forwarded interrupts, pause replies) must still wake
// the controller's thread. Driven by our host over the socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NvmeHost } from '../../samples/nvme/host.js';
import { VfioUserClient } from '../../src/client/client.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('--dedicated-thread with --io-workers 2: I/O on both queues, a masked vector, and an unmap while running', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-dedicated-'));
  const sock = join(dir, 'nvme.sock');
  const backing = join(dir, 'disk.img');
  const server = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'cli/run.ts'), 'nvme', '-v', '--dedicated-thread', '--io-workers', '2', '--backing', backing, '--size', '8M', sock],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  server.stderr.on('data', (c: Buffer) => (log += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => (gone = true));
  let client: VfioUserClient | null = null;
  try {
    const end = Date.now() + 60_000;
    while (!existsSync(sock)) {
      if (gone || Date.now() > end) assert.fail(`server did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    client = await VfioUserClient.connect(sock);
    const host = await NvmeHost.attach(client);
    await host.enable();
    assert.equal((await host.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (1 << 16) | 1 })).code, 0);
    await host.createIoQueue(1, 32, 1);
    await host.createIoQueue(2, 32, 2);
    const a = new Uint8Array(64 << 10).map((_, i) => (i * 7) & 0xff);
    const b = new Uint8Array(8 << 10).map((_, i) => (i * 13 + 1) & 0xff);
    const [wa, wb] = await Promise.all([host.write(1, 0, a), host.write(2, 1024, b)]);
    assert.equal(wa.code, 0);
    assert.equal(wb.code, 0);
    assert.deepEqual((await host.read(2, 0, a.length)).data, a);
    assert.deepEqual((await host.read(1, 1024, b.length)).data, b);
    // A masked vector: the worker forwards, the controller's thread holds it pending, the unmask delivers it.
    await client.maskIrq('msix', 2);
    const irqs = host.interrupts;
    let reaped = false;
    const done = host.write(2, 2048, b).then((c) => ((reaped = true), c));
    const until = Date.now() + 20_000;
    while (!reaped && Date.now() < until) {
      host.poll();
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal((await done).code, 0);
    await client.unmaskIrq('msix', 2);
    while (host.interrupts === irqs && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    assert.ok(host.interrupts > irqs, 'the pending interrupt was delivered on unmask');
    // A DMA map while the workers run (the controller pauses and resumes them), then more I/O.
    const extra = await client.createGuestMemory({ iova: 0x4000_0000, size: 1 << 20, useFd: true });
    assert.equal((await host.write(1, 4096, a)).code, 0);
    await extra.unmap();
    assert.deepEqual((await host.read(2, 4096, a.length)).data, a);
    host.stop();
    await client.close();
    client = null;
    const file = readFileSync(backing);
    assert.deepEqual(file.subarray(0, a.length), Buffer.from(a));
    assert.deepEqual(file.subarray(1024 * 512, 1024 * 512 + b.length), Buffer.from(b));
    const endLog = Date.now() + 20_000;
    while (!/I\/O workers: /.test(log) && Date.now() < endLog) await new Promise((r) => setTimeout(r, 20));
    const m = /I\/O workers: commands (\d+)\/(\d+)/.exec(log);
    assert.ok(m && Number(m[1]) > 0 && Number(m[2]) > 0, `both workers ran commands:\n${log}`);
    assert.deepEqual(log.split('\n').filter((l) => /: (warn|error): /.test(l)), [], 'no warnings');
  } finally {
    await client?.close();
    if (!gone) server.kill('SIGTERM');
    assert.equal(await exited, 0, `server exit status\n${log}`);
    rmSync(dir, { recursive: true, force: true });
  }
});
