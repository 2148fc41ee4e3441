// End to end, like production: one guest with two of our devices at once (the
// GPIO card and the NVMe controller offering MSI without MSI-X), each bound by
// its stock driver loaded by modalias. In that guest: GPIO loopback, Linux's
// nvme driver on PCI-MSI, and a device reset from inside the guest (driver
// unbound, /sys/bus/pci/devices/.../reset, driver rebound) after which the
// disk still reads back what was written. The cases share the one boot; each
// also asserts that QEMU printed nothing and the servers logged no warning.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createGpioDevice } from '../../samples/gpio-device.js';
import { createNvmeDevice } from '../../samples/nvme/index.js';
import { bootGuest, collectingLogger, ensureHarness, findSection, HARMLESS_QEMU_LINES, parseGuestReport, qemuProblems, shared } from './qemu.js';

const SIZE = 32 << 20;
const PATTERN_KB = 1024;

// A JS template: "$" + "{" interpolates JS; the shell's variables reach inner shells via export.
const GUEST_SCRIPT = String.raw`
export nv=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/class)" = 0x010802 ] && echo $d; done)
export gp=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x494f ] && echo $d; done)
export nvbdf=$(basename $nv) gpbdf=$(basename $gp)
waitdisk='i=0; while [ ! -e /sys/block/nvme0n1/size ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; [ -e /sys/block/nvme0n1/size ] && echo ready'
section drivers sh -c 'echo nvme=$(basename $(readlink $nv/driver)) gpio=$(basename $(readlink $gp/driver))'
section disk sh -c "$waitdisk"
section msi-mode sh -c 'cat $nv/msi_irqs/*'
section pattern sh -c 'dd if=/dev/urandom of=/tmp/pat bs=1k count=${PATTERN_KB} 2>/dev/null && md5sum < /tmp/pat'
section write sh -c 'dd if=/tmp/pat of=/dev/nvme0n1 bs=64k oflag=direct'
section gpio sh -c '
  chip=$(for g in /sys/class/gpio/gpiochip*; do [ "$(cat $g/label)" = $gpbdf ] && echo $g; done)
  base=$(cat $chip/base)
  echo $base > /sys/class/gpio/export && echo $((base + 16)) > /sys/class/gpio/export || exit 1
  echo 1 > /sys/class/gpio/OUT0/value; a=$(cat /sys/class/gpio/IIN0/value)
  echo 0 > /sys/class/gpio/OUT0/value; b=$(cat /sys/class/gpio/IIN0/value)
  echo high=$a low=$b'
section irq-before sh -c 'grep nvme /proc/interrupts'
section reset-method cat $nv/reset_method
section unbind sh -c 'echo $nvbdf > /sys/bus/pci/drivers/nvme/unbind || exit 1; [ ! -e $nv/driver ] && [ ! -e /sys/block/nvme0n1 ] && echo unbound'
section reset sh -c 'echo 1 > $nv/reset'
section rebind sh -c 'echo $nvbdf > /sys/bus/pci/drivers/nvme/bind || exit 1; echo driver=$(basename $(readlink $nv/driver))'
section disk-again sh -c "$waitdisk"
section readback sh -c 'dd if=/dev/nvme0n1 bs=64k count=${PATTERN_KB / 64} iflag=direct 2>/dev/null | md5sum'
section irq-after sh -c 'grep nvme /proc/interrupts'
`;

/** Sum of the per-CPU counts of a /proc/interrupts line. */
function irqTotal(line: string): number {
  return line.trim().split(/\s+/).slice(1).filter((x) => /^\d+$/.test(x)).map(Number).reduce((a, b) => a + b, 0);
}

const guest = shared(async () => {
  await ensureHarness();
  const dir = mkdtempSync(join(tmpdir(), 'vfu-e2e-prod-'));
  const gpioLog = collectingLogger();
  const nvmeLog = collectingLogger();
  const gpio = createGpioDevice({ logger: gpioLog.logger });
  const backing = join(dir, 'disk.img');
  const nvme = createNvmeDevice({ backing, size: SIZE, irq: 'msi', logger: nvmeLog.logger });
  const gpioSock = join(dir, 'gpio.sock');
  const nvmeSock = join(dir, 'nvme.sock');
  try {
    await gpio.ctx.listen(gpioSock);
    await nvme.ctx.listen(nvmeSock);
    const res = await bootGuest({ sockets: [gpioSock, nvmeSock], autoload: true, guestScript: GUEST_SCRIPT, timeoutMs: 240_000 });
    await nvme.close();
    await gpio.ctx.close();
    const file = readFileSync(backing);
    const report = parseGuestReport(res.console);
    const why = `\n--- console ---\n${res.console.slice(-8000)}\n--- qemu stderr ---\n${res.qemuStderr}\n--- nvme log ---\n${nvmeLog.all.slice(-40).join('\n')}`;
    return { res, report, why, file, gpio, nvme, gpioLog, nvmeLog };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** What every case checks: the guest finished, QEMU printed nothing, no server warned. */
async function healthy(): Promise<Awaited<ReturnType<typeof guest>>> {
  const g = await guest();
  assert.equal(g.res.exitCode, 0, `QEMU exit ${g.res.exitCode}${g.why}`);
  assert.ok(g.report.done, `guest did not finish${g.why}`);
  assert.deepEqual(qemuProblems(g.res.qemuStderr, HARMLESS_QEMU_LINES), [], g.why);
  assert.deepEqual(g.gpioLog.unexpected(), [], g.why);
  assert.deepEqual(g.nvmeLog.unexpected(), [], g.why);
  return g;
}

test('two devices in one guest: gpio-pci-idio-16 and nvme both bound by their stock drivers, loaded by modalias', { timeout: 10 * 60_000 }, async () => {
  const g = await healthy();
  const byBdf = new Map(g.report.pci.map((d) => [d.bdf, d]));
  assert.equal(byBdf.get('0000:00:01.0')?.vendor, 0x494f, g.why);
  assert.equal(byBdf.get('0000:00:02.0')?.class, 0x010802, g.why);
  assert.equal(byBdf.get('0000:00:01.0')?.driver, 'pci-idio-16');
  assert.equal(byBdf.get('0000:00:02.0')?.driver, 'nvme');
  assert.deepEqual(g.report.autoload.map((l) => l.replace(/ pci:\S+/, '')).sort(), ['0000:00:01.0 -> gpio-pci-idio-16', '0000:00:02.0 -> nvme']);
  assert.deepEqual(findSection(g.report, 'drivers')?.lines, ['nvme=nvme gpio=pci-idio-16']);
  // Both work at the same time: GPIO loopback and disk I/O.
  assert.deepEqual(findSection(g.report, 'gpio')?.lines, ['high=1 low=0'], g.why);
  assert.deepEqual(findSection(g.report, 'disk')?.lines, ['ready'], g.why);
  assert.equal(findSection(g.report, 'write')?.rc, 0, g.why);
  assert.ok(g.gpio.stats.barWrites >= 2 && g.nvme.stats.ioCommands > 16, `${JSON.stringify(g.gpio.stats)} ${JSON.stringify(g.nvme.stats)}`);
});

test('MSI end to end: nvme --irq msi offers MSI without MSI-X and Linux nvme runs on PCI-MSI', { timeout: 10 * 60_000 }, async () => {
  const g = await healthy();
  const nv = g.report.pci.find((d) => d.class === 0x010802)!;
  // The capability list the guest read: MSI, no MSI-X.
  const ids: number[] = [];
  for (let p = nv.config[0x34]! & 0xfc, n = 0; p >= 0x40 && n < 48; p = nv.config[p + 1]! & 0xfc, n++) ids.push(nv.config[p]!);
  assert.ok(ids.includes(0x05) && !ids.includes(0x11), `capabilities ${ids.map((i) => i.toString(16)).join(' ')}`);
  assert.ok(nv.msiIrqs.length >= 1, 'MSI vectors allocated');
  assert.deepEqual([...new Set(findSection(g.report, 'msi-mode')?.lines)], ['msi'], g.why);
  const lines = findSection(g.report, 'irq-before')?.lines ?? [];
  assert.ok(lines.length >= 1 && lines.every((l) => /PCI-MSI-0000:00:02\.0/.test(l) && !/MSIX/.test(l)), `nvme interrupt lines: ${lines.join(' | ')}`);
  assert.ok(lines.reduce((n, l) => n + irqTotal(l), 0) > 16, `MSI interrupts counted: ${lines.join(' | ')}`);
  assert.equal(g.nvme.stats.interruptsNotDelivered, 0);
});

test('device reset from inside the guest: driver unbound, FLR, driver rebound, the disk reads back what was written', { timeout: 10 * 60_000 }, async () => {
  const g = await healthy();
  const written = findSection(g.report, 'pattern')?.lines[0]?.split(/\s+/)[0];
  assert.match(written ?? '', /^[0-9a-f]{32}$/, g.why);
  assert.match(findSection(g.report, 'reset-method')?.lines[0] ?? '', /\bflr\b/, g.why);
  assert.deepEqual(findSection(g.report, 'unbind')?.lines, ['unbound'], g.why);
  assert.equal(findSection(g.report, 'reset')?.rc, 0, g.why);
  assert.deepEqual(findSection(g.report, 'rebind')?.lines, ['driver=nvme'], g.why);
  assert.deepEqual(findSection(g.report, 'disk-again')?.lines, ['ready'], g.why);
  assert.equal(findSection(g.report, 'readback')?.lines[0]?.split(/\s+/)[0], written, g.why);
  // The server saw the FLR (not only a DEVICE_RESET) and the controller came back up.
  assert.ok(g.nvmeLog.all.some((l) => /controller reset \(flr\)/.test(l)), `server log: ${g.nvmeLog.all.filter((l) => /reset/.test(l)).join(' | ')}`);
  const enables = g.nvmeLog.all.filter((l) => /enabled: admin SQ/.test(l)).length;
  assert.ok(enables >= 2, `controller enabled ${enables} times`);
  // Interrupts still arrive on MSI after the reset.
  const after = findSection(g.report, 'irq-after')?.lines ?? [];
  assert.ok(after.some((l) => /PCI-MSI-0000:00:02\.0/.test(l) && irqTotal(l) > 0), after.join(' | '));
  // And the backing file holds the data after power-off.
  assert.equal(createHash('md5').update(g.file.subarray(0, PATTERN_KB << 10)).digest('hex'), written);
});
