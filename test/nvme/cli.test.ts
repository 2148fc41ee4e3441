import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../cli/main.js';
import { parseSize } from '../../cli/nvme.js';
import { NvmeHost, PAGE } from '../../samples/nvme/host.js';
import { VfioUserClient } from '../../src/client/client.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('nvme CLI: sizes and argument errors', async () => {
  assert.equal(parseSize('64M'), 64 << 20);
  assert.equal(parseSize('1G'), 1 << 30);
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('512k'), 512 << 10);
  assert.equal(parseSize('2MiB'), 2 << 20);
  assert.throws(() => parseSize('100'), /multiple of 512/);
  assert.throws(() => parseSize('lots'), /bad size/);
  let err = '';
  const io = { out: () => {}, err: (s: string) => void (err += s) };
  const usage = async (argv: string[], why: RegExp): Promise<void> => {
    err = '';
    assert.equal(await main(['nvme', ...argv], io), 2, argv.join(' '));
    assert.match(err, why);
    assert.match(err, /usage: vfio-user nvme/);
  };
  await usage(['--size', '1M', 'sock'], /--backing FILE is required/);
  await usage(['--backing', 'x', 'sock'], /--size SIZE is required/);
  await usage(['--backing', 'x', '--size', '1M'], /missing SOCKET/);
  await usage(['--backing', 'x', '--size', '1M', '--bogus', 's'], /unknown option --bogus/);
  await usage(['--backing', 'x', '--size', '100', 's'], /multiple of 512/);
  await usage(['s', '--backing'], /option --backing needs a value/);
  for (const n of ['0', '17', 'two', '1.5', '']) await usage(['--backing', 'x', '--size', '1M', '--io-workers', n, 's'], /--io-workers wants a number of threads/);
  await usage(['--backing', 'x', '--size', '1M', '--sync-io-max', 'lots', 's'], /--sync-io-max wants a byte count/);
  for (const sn of ['', 'x'.repeat(21), 'caf\u00e9']) await usage(['--backing', 'x', '--size', '1M', '--serial', sn, 's'], /--serial wants 1 to 20 printable ASCII characters/);
});

// Two controllers in one guest must differ in serial: Linux names the
// subsystem after it and refuses a second controller with the same one.
test('vfio-user nvme --serial: Identify Controller reports it', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nvme-serial-'));
  const sock = join(dir, 'nvme.sock');
  const server = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'cli/run.ts'), 'nvme', '--serial', 'BENCH-ours', '--backing', join(dir, 'disk.img'), '--size', '1M', sock], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  server.stderr.on('data', (c: Buffer) => (log += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
  let client: VfioUserClient | null = null;
  try {
    // Liveness watchdog: a server that never listens fails the test.
    for (let i = 0; i < 1500 && !existsSync(sock) && server.exitCode === null; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(existsSync(sock), `server did not listen:\n${log}`);
    client = await VfioUserClient.connect(sock);
    const host = await NvmeHost.attach(client);
    await host.enable();
    const buf = host.alloc(PAGE);
    assert.equal((await host.admin({ opcode: 0x06, prp1: buf, cdw10: 1 })).code, 0);
    // SN: bytes 4-23, ASCII padded with spaces.
    assert.equal(new TextDecoder().decode(host.bytesAt(buf, 24).subarray(4, 24)), 'BENCH-ours'.padEnd(20));
    host.stop();
  } finally {
    await client?.close();
    server.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
});
