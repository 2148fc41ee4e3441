// `vfio-user nvme --io-workers 2` under a QEMU 11.1 guest with 8 GiB of RAM
// (memory-backend-memfd share=on: pages are allocated only as the guest
// touches them) and 2 vCPUs. Linux's nvme driver makes one I/O queue per CPU;
// a dd pinned to each CPU writes a pattern and another reads it back, so both
// queues (and so both workers) carry data. QEMU maps guest RAM above 4 GiB as
// one 6 GiB DMA region: the workers must window it (issue #12 defects 1-2),
// and the server's summary line proves DMA went through that region at a
// guest address beyond the first 4 GiB. After power-off the backing file
// holds both patterns.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { bootGuest, ensureHarness, findSection, HARMLESS_QEMU_LINES, parseGuestReport, qemuProblems } from './qemu.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SIZE_MB = 64;
const PATTERN_MB = 4;
/** The second pattern's place on the disk (MiB). */
const B_AT_MB = 8;

// No "$" + "{" here: it is a JS template. busybox sh, run as /run.sh in the guest.
const guestScript = String.raw`
section load loadmod nvme
i=0; while [ ! -e /sys/block/nvme0n1/size ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
section queues sh -c 'echo cpus=$(nproc) hwq=$(ls /sys/block/nvme0n1/mq | wc -l); for q in /sys/block/nvme0n1/mq/*; do echo "hctx $(basename $q) cpus=$(cat $q/cpu_list)"; done'
section pattern sh -c 'dd if=/dev/urandom of=/tmp/a bs=1M count=${PATTERN_MB} 2>/dev/null && dd if=/dev/urandom of=/tmp/b bs=1M count=${PATTERN_MB} 2>/dev/null && md5sum /tmp/a /tmp/b'
section write sh -c '
  taskset -c 0 dd if=/tmp/a of=/dev/nvme0n1 bs=64k oflag=direct 2>/dev/null & p0=$!
  taskset -c 1 dd if=/tmp/b of=/dev/nvme0n1 bs=64k seek=${B_AT_MB * 16} oflag=direct 2>/dev/null & p1=$!
  wait $p0; r0=$?; wait $p1; r1=$?; echo rc0=$r0 rc1=$r1; [ $r0 = 0 ] && [ $r1 = 0 ]'
section read sh -c '
  taskset -c 1 dd if=/dev/nvme0n1 of=/tmp/a2 bs=64k count=${PATTERN_MB * 16} iflag=direct 2>/dev/null & p0=$!
  taskset -c 0 dd if=/dev/nvme0n1 of=/tmp/b2 bs=64k skip=${B_AT_MB * 16} count=${PATTERN_MB * 16} iflag=direct 2>/dev/null & p1=$!
  wait $p0; r0=$?; wait $p1; r1=$?; echo rc0=$r0 rc1=$r1; md5sum /tmp/a2 /tmp/b2; [ $r0 = 0 ] && [ $r1 = 0 ]'
section irq-lines sh -c 'grep nvme /proc/interrupts'
`;

/** Sum of the per-CPU counts of a /proc/interrupts line. */
function irqTotal(line: string): number {
  return line.trim().split(/\s+/).slice(1).filter((x) => /^\d+$/.test(x)).map(Number).reduce((a, b) => a + b, 0);
}

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

test('QEMU guest, 8 GiB and 2 vCPUs: vfio-user nvme --io-workers 2 serves both I/O queues from workers, DMA above 4 GiB', { timeout: 10 * 60_000 }, async () => {
  await ensureHarness();
  const dir = mkdtempSync(join(tmpdir(), 'vfu-e2e-nvme-workers-'));
  const sock = join(dir, 'nvme.sock');
  const backing = join(dir, 'disk.img');
  const server = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'cli/run.ts'), 'nvme', '-v', '--io-workers', '2', '--backing', backing, '--size', `${SIZE_MB}M`, sock],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  server.stderr.on('data', (c: Buffer) => (log += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
  let serverGone = false;
  void exited.then(() => (serverGone = true));
  try {
    // The socket appears once both workers serve doorbells (startNvmeDevice resolves first).
    const end = Date.now() + 120_000;
    while (!existsSync(sock)) {
      if (serverGone || Date.now() > end) assert.fail(`server did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(log, /I\/O queues served by 2 worker thread\(s\)/);

    const res = await bootGuest({ socket: sock, guestScript, memMiB: 8192, smp: 2, timeoutMs: 300_000 });
    const report = parseGuestReport(res.console);
    const why = `\n--- console ---\n${res.console.slice(-6000)}\n--- qemu stderr ---\n${res.qemuStderr}\n--- server ---\n${log.slice(-4000)}`;
    assert.equal(res.exitCode, 0, `QEMU exit ${res.exitCode}${why}`);
    assert.ok(report.done, `guest did not finish${why}`);
    assert.deepEqual(qemuProblems(res.qemuStderr, HARMLESS_QEMU_LINES), [], why);

    const queues = findSection(report, 'queues')?.lines.join('\n') ?? '';
    assert.match(queues, /cpus=2 hwq=2/, `two CPUs, two I/O queues${why}`);
    const [aMd5, bMd5] = (findSection(report, 'pattern')?.lines ?? []).map((l) => l.split(/\s+/)[0]);
    assert.ok(aMd5 && bMd5 && /^[0-9a-f]{32}$/.test(aMd5) && aMd5 !== bMd5, `patterns${why}`);
    assert.equal(findSection(report, 'write')?.rc, 0, `writes on both CPUs${why}`);
    const read = findSection(report, 'read');
    assert.equal(read?.rc, 0, `reads on both CPUs${why}`);
    const back = read!.lines.filter((l) => /\/tmp\/[ab]2/.test(l)).map((l) => l.split(/\s+/)[0]);
    assert.deepEqual(back, [aMd5, bMd5], 'each pattern read back (on the other CPU than wrote it)');

    // Both I/O queues interrupted the guest: both carried commands.
    const irqLines = findSection(report, 'irq-lines')?.lines ?? [];
    for (const q of ['nvme0q1', 'nvme0q2']) {
      const line = irqLines.find((l) => new RegExp(`${q}\\b`).test(l));
      assert.ok(line && irqTotal(line) > 0, `${q} interrupts: ${irqLines.join(' | ')}`);
    }

    // The server summarises its workers when the client goes (the guest powered off).
    const endLog = Date.now() + 30_000;
    while (!/I\/O workers: /.test(log) && Date.now() < endLog) await new Promise((r) => setTimeout(r, 50));
    const m = /I\/O workers: commands (\d+)\/(\d+), interrupts (\d+) \((\d+) direct\), windowed regions (\d+), windowed DMA (\d+) up to IOVA (0x[0-9a-f]+|none)/.exec(log);
    assert.ok(m, `no worker summary in the server log${why}`);
    const [, c0, c1, , direct, regions, windowed, high] = m;
    assert.ok(Number(c0) > 0 && Number(c1) > 0, `both workers ran commands: ${m[0]}`);
    assert.ok(Number(direct) > 0, `workers wrote the eventfds themselves: ${m[0]}`);
    assert.ok(Number(regions) >= 2, `each worker windowed the region over 4 GiB: ${m[0]}`);
    assert.ok(Number(windowed) > 0 && high !== 'none' && BigInt(high!) >= 1n << 32n, `DMA through a window above 4 GiB: ${m[0]}`);
    const problems = log.split('\n').filter((l) => /: (warn|error): /.test(l));
    assert.deepEqual(problems, [], 'the server logged no warning');

    // The backing file holds both patterns after power-off.
    const file = readFileSync(backing);
    assert.equal(md5(file.subarray(0, PATTERN_MB << 20)), aMd5, 'pattern A in the backing file');
    assert.equal(md5(file.subarray(B_AT_MB << 20, (B_AT_MB + PATTERN_MB) << 20)), bMd5, 'pattern B in the backing file');
    console.log(`# e2e nvme --io-workers 2: boot+script ${res.wallMs} ms; ${queues.replace(/\n/g, '; ')}; ${m[0]}`);
  } finally {
    if (!serverGone) server.kill('SIGTERM');
    const code = await exited;
    rmSync(dir, { recursive: true, force: true });
    void code;
  }
});
