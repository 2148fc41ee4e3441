// The NVMe sample under QEMU 11.1 (vfio-user-pci) with a Linux guest: the
// stock nvme driver binds over MSI-X, sees one namespace of the configured
// size, direct-I/O dd of a random pattern reads back with the same md5, an
// ext2 filesystem is made, mounted and read back (ext4.ko is in the guest:
// vm/setup.sh GUEST_MODULES), and after power-off the backing file
// holds the pattern.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createNvmeDevice } from '../../samples/nvme/index.js';
import { bootGuest, collectingLogger, ensureHarness, findSection, HARMLESS_QEMU_LINES, parseGuestReport, qemuProblems } from './qemu.js';

const SIZE = 64 << 20;
const PATTERN_MB = 16;
// No "$" + "{" here: it is a JS template. Inner shells get variables via export.
const guestScript = String.raw`
export dev=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/class)" = 0x010802 ] && echo $d; done)
section load loadmod nvme
i=0; while [ ! -e /sys/block/nvme0n1/size ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
section bind sh -c 'echo driver=$(basename $(readlink $dev/driver)) enable=$(cat $dev/enable) msi_irqs=$(ls $dev/msi_irqs 2>/dev/null | wc -l)'
section disk sh -c 'echo size=$(cat /sys/block/nvme0n1/size) model="$(cat /sys/class/nvme/nvme0/model | tr -s " ")" serial=$(cat /sys/class/nvme/nvme0/serial) hwq=$(ls /sys/block/nvme0n1/mq | wc -l) max_hw_kb=$(cat /sys/block/nvme0n1/queue/max_hw_sectors_kb) wc=$(cat /sys/block/nvme0n1/queue/write_cache)'
section fs sh -c '
  loadmod crc32c_generic ext4 || exit 1
  mke2fs -q /dev/nvme0n1 >/dev/null || exit 2
  mkdir -p /mnt && mount -t ext2 /dev/nvme0n1 /mnt || exit 3
  seq 1 20000 > /mnt/numbers && sync && a=$(md5sum < /mnt/numbers)
  umount /mnt && echo 3 > /proc/sys/vm/drop_caches
  mount -t ext2 -o ro /dev/nvme0n1 /mnt || exit 4
  b=$(md5sum < /mnt/numbers); umount /mnt
  echo fs ext2 written=$a read=$b
  [ "$a" = "$b" ]'
section pattern sh -c 'dd if=/dev/urandom of=/tmp/pat bs=1M count=${PATTERN_MB} 2>/dev/null && md5sum /tmp/pat'
section write sh -c 'a=$(cut -d" " -f1 /proc/uptime); dd if=/tmp/pat of=/dev/nvme0n1 bs=1M oflag=direct || exit 1; b=$(cut -d" " -f1 /proc/uptime); echo "elapsed $a $b"'
section read sh -c 'a=$(cut -d" " -f1 /proc/uptime); dd if=/dev/nvme0n1 of=/tmp/back bs=1M count=${PATTERN_MB} iflag=direct || exit 1; b=$(cut -d" " -f1 /proc/uptime); echo "elapsed $a $b"; md5sum /tmp/back'
section write4k sh -c 'a=$(cut -d" " -f1 /proc/uptime); dd if=/dev/zero of=/dev/nvme0n1 bs=4k count=1024 seek=8192 oflag=direct || exit 1; b=$(cut -d" " -f1 /proc/uptime); echo "elapsed $a $b"'
section read4k sh -c 'a=$(cut -d" " -f1 /proc/uptime); dd if=/dev/nvme0n1 of=/dev/null bs=4k count=1024 skip=8192 iflag=direct || exit 1; b=$(cut -d" " -f1 /proc/uptime); echo "elapsed $a $b"'
section irq-lines sh -c 'grep -i nvme /proc/interrupts'
`;

/** Sum of the per-CPU counts of /proc/interrupts lines. */
function irqTotal(line: string): number {
  return line.trim().split(/\s+/).slice(1).filter((x) => /^\d+$/.test(x)).map(Number).reduce((a, b) => a + b, 0);
}

/** "N MiB in T s = R MiB/s (K IOPS)" from a section's "elapsed A B" line (guest uptime, 10 ms resolution). */
function ddRate(lines: string[] | undefined, bytes: number, blockSize: number): string {
  const m = lines?.map((l) => /^elapsed ([\d.]+) ([\d.]+)/.exec(l)).find((x) => x);
  if (!m) return '?';
  const s = Math.max(0.01, Number(m[2]) - Number(m[1]));
  return `${(bytes / 1048576).toFixed(0)} MiB in ${s.toFixed(2)} s = ${(bytes / 1048576 / s).toFixed(1)} MiB/s (${Math.round(bytes / blockSize / s)} IOPS)`;
}

test('QEMU guest: Linux nvme driver on our NVMe controller (dd direct I/O, ext2, MSI-X)', { timeout: 10 * 60_000 }, async () => {
  await ensureHarness();
  const dir = mkdtempSync(join(tmpdir(), 'vfu-e2e-nvme-'));
  const sock = join(dir, 'nvme.sock');
  const backing = join(dir, 'disk.img');
  // Commands the controller refused, for the summary (Linux probes a few optional ones).
  const refused: string[] = [];
  const note = (m: string): void => void (/^command |failed|fatal/.test(m) && refused.length < 20 && refused.push(m));
  const log = collectingLogger((level, m) => level !== 'info' && note(m));
  const dev = createNvmeDevice({ backing, size: SIZE, logger: log.logger });
  await dev.ctx.listen(sock);
  try {
    const res = await bootGuest({
      socket: sock,
      guestScript,
      timeoutMs: 170_000,
    });
    const report = parseGuestReport(res.console);
    if (process.env.E2E_SHOW_CONSOLE) console.log(res.console);
    const why = `\n--- console ---\n${res.console.slice(-8000)}\n--- qemu stderr ---\n${res.qemuStderr}`;
    assert.equal(res.exitCode, 0, `QEMU exit ${res.exitCode}${why}`);
    assert.ok(report.done, `guest did not finish${why}`);
    assert.deepEqual(qemuProblems(res.qemuStderr, HARMLESS_QEMU_LINES), [], why);
    assert.deepEqual(log.unexpected(), [], 'the server logged no warning');

    const pci = report.pci.find((d) => d.vendor === 0x4e56);
    assert.ok(pci, `device not enumerated${why}`);
    assert.equal(pci.config[0x0b], 0x01, 'class: mass storage');
    assert.equal(pci.config[0x0a], 0x08, 'subclass: NVM');
    assert.equal(pci.config[0x09], 0x02, 'prog-if: NVMe');

    const bind = findSection(report, 'bind')?.lines.join('\n') ?? '';
    assert.match(bind, /driver=nvme enable=1/, why);
    const msiIrqs = Number(/msi_irqs=(\d+)/.exec(bind)?.[1] ?? 0);
    assert.ok(msiIrqs >= 2, `MSI-X vectors in use: ${msiIrqs}`);
    const disk = findSection(report, 'disk')?.lines.join('\n') ?? '';
    assert.match(disk, new RegExp(`size=${SIZE / 512} `), `namespace size${why}`);

    const guestMd5 = findSection(report, 'pattern')?.lines.find((l) => /\/tmp\/pat/.test(l))?.split(/\s+/)[0];
    const backMd5 = findSection(report, 'read')?.lines.find((l) => /\/tmp\/back/.test(l))?.split(/\s+/)[0];
    assert.ok(guestMd5 && /^[0-9a-f]{32}$/.test(guestMd5), `pattern md5${why}`);
    assert.equal(backMd5, guestMd5, 'guest read back what it wrote');
    assert.equal(findSection(report, 'write')?.rc, 0);
    assert.equal(findSection(report, 'read')?.rc, 0);

    const fs = findSection(report, 'fs');
    // ext4 is in the guest (vm/setup.sh GUEST_MODULES): the check always runs.
    assert.ok(fs, `no fs section${why}`);
    assert.equal(fs.rc, 0, `filesystem check failed (rc ${fs.rc})${why}`);
    const fsLine = fs.lines.find((l) => l.startsWith('fs ext2 '));
    assert.match(fsLine ?? '', /^fs ext2 written=([0-9a-f]{32}) +-? *read=\1/, `ext2 read back what it wrote${why}`);
    // The 4 KiB direct I/O passes succeeded too (not only timed).
    assert.equal(findSection(report, 'write4k')?.rc, 0, `4 KiB direct writes failed${why}`);
    assert.equal(findSection(report, 'read4k')?.rc, 0, `4 KiB direct reads failed${why}`);

    // The backing file holds the pattern once the guest has powered off.
    const file = readFileSync(backing);
    assert.equal(file.length, SIZE);
    assert.equal(createHash('md5').update(file.subarray(0, PATTERN_MB << 20)).digest('hex'), guestMd5, 'backing file holds the pattern');

    // Interrupts came through MSI-X: the nvme queue lines in /proc/interrupts counted.
    const irqLines = findSection(report, 'irq-lines')?.lines ?? [];
    const msix = irqLines.filter((l) => /PCI-MSIX?/.test(l) && /nvme\d+q\d+/.test(l));
    assert.ok(msix.length >= 2, `nvme MSI-X lines: ${irqLines.join(' | ')}`);
    const ioIrqs = msix.filter((l) => !/nvme0q0/.test(l)).reduce((n, l) => n + irqTotal(l), 0);
    assert.ok(ioIrqs > 100, `I/O queue interrupts: ${ioIrqs}`);
    assert.ok(dev.stats.ioCommands > 100 && dev.stats.interrupts > 100, JSON.stringify(dev.stats));
    // Linux's nvme driver saw OACS bit 8 and configured shadow doorbells: its CQ head updates need no MMIO
    // (the controller parks the CQ EventIdx), so there is about one doorbell write per command, not two.
    assert.ok(dev.stats.doorbellBufferConfigs >= 1, 'Doorbell Buffer Config issued and accepted');
    assert.ok(dev.stats.doorbells < dev.stats.ioCommands * 1.5, `doorbells ${dev.stats.doorbells} for ${dev.stats.ioCommands} commands`);

    console.log(
      `# e2e nvme: boot+script ${res.wallMs} ms; guest: ${bind.replace(/\n/g, ' ')}; ${disk}; ` +
        `dd bs=1M write ${ddRate(findSection(report, 'write')?.lines, PATTERN_MB << 20, 1 << 20)}, read ${ddRate(findSection(report, 'read')?.lines, PATTERN_MB << 20, 1 << 20)}; ` +
        `bs=4k write ${ddRate(findSection(report, 'write4k')?.lines, 4 << 20, 4096)}, read ${ddRate(findSection(report, 'read4k')?.lines, 4 << 20, 4096)}; ` +
        `fs: ${fs.lines.join(' ')}; irq lines: ${msix.map((l) => l.trim().replace(/\s+/g, ' ')).join(' | ')}; ` +
        `server stats ${JSON.stringify(dev.stats)}; refused: ${refused.join(' | ') || 'none'}`,
    );
  } finally {
    await dev.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
