// The GPIO sample under a real QEMU 11.1 (vfio-user-pci) with a Linux guest:
// the stock gpio-pci-idio-16 driver binds, sysfs GPIO writes reach our
// outputs, the loopback inputs read back, and a change of state raises an
// interrupt the guest counts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createGpioDevice } from '../../samples/gpio-device.js';
import { bootGuest, collectingLogger, ensureHarness, findSection, HARMLESS_QEMU_LINES, parseGuestReport, qemuProblems } from './qemu.js';

// No "$" + "{" in here: it is a JS template. Inner shells get variables via export.
const GUEST_SCRIPT = String.raw`
export G=/sys/class/gpio
export dev=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x494f ] && echo $d; done)
export bdf=$(basename $dev)
section load loadmod gpio-pci-idio-16
section bind sh -c 'echo driver=$(basename $(readlink $dev/driver)) enable=$(cat $dev/enable) irq=$(cat $dev/irq)'
export chip=$(for g in $G/gpiochip*; do [ "$(cat $g/label)" = "$bdf" ] && echo $g; done)
section chip sh -c 'echo label=$(cat $chip/label) ngpio=$(cat $chip/ngpio) base=$(cat $chip/base)'
base=$(cat $chip/base)
for i in 0 1 9 15; do echo $((base + i)) > $G/export; echo $((base + 16 + i)) > $G/export; done
section loopback sh -c '
  for i in 0 1 9 15; do
    echo 1 > $G/OUT$i/value; a=$(cat $G/IIN$i/value)
    echo 0 > $G/OUT$i/value; b=$(cat $G/IIN$i/value)
    echo line$i high=$a low=$b
  done'
section edge sh -c 'echo both > $G/IIN0/edge && cat $G/IIN0/edge'
section irq-before sh -c 'grep -e "$bdf" /proc/interrupts'
section toggle sh -c 'for i in 1 2 3; do echo 1 > $G/OUT0/value; echo 0 > $G/OUT0/value; done; echo IIN0=$(cat $G/IIN0/value)'
section irq-after sh -c 'grep -e "$bdf" /proc/interrupts'
`;

/** Sum of the per-CPU counts of /proc/interrupts lines matching `re`. */
function irqCount(lines: string[], re: RegExp): number {
  return lines
    .filter((l) => re.test(l))
    .map((l) => l.trim().split(/\s+/).slice(1).filter((x) => /^\d+$/.test(x)).map(Number).reduce((a, b) => a + b, 0))
    .reduce((a, b) => a + b, 0);
}

test('QEMU guest: the stock gpio-pci-idio-16 driver drives our GPIO card', { timeout: 15 * 60_000 }, async () => {
  await ensureHarness();
  const dir = mkdtempSync(join(tmpdir(), 'vfu-e2e-gpio-'));
  const sock = join(dir, 'gpio.sock');
  const log = collectingLogger();
  const dev = createGpioDevice({ logger: log.logger });
  await dev.ctx.listen(sock);
  try {
    const res = await bootGuest({ socket: sock, guestScript: GUEST_SCRIPT, timeoutMs: 240_000 });
    const report = parseGuestReport(res.console);
    const why = `\n--- console ---\n${res.console.slice(-6000)}\n--- qemu stderr ---\n${res.qemuStderr}`;
    assert.equal(res.exitCode, 0, `QEMU exit ${res.exitCode}${why}`);
    assert.ok(report.done, `guest did not finish${why}`);
    assert.deepEqual(qemuProblems(res.qemuStderr, HARMLESS_QEMU_LINES), [], why);
    assert.deepEqual(log.unexpected(), [], 'the server logged no warning');

    // Enumeration: our IDs, a 256-byte I/O BAR2, interrupt pin A.
    const pci = report.pci.find((d) => d.vendor === 0x494f);
    assert.ok(pci, `device not enumerated${why}`);
    assert.equal(pci.device, 0x0dc8);
    const bar2 = pci.resources.find((r) => r.index === 2);
    assert.ok(bar2, 'BAR2 missing');
    assert.equal(bar2.end - bar2.start + 1n, 256n);
    assert.equal(bar2.flags & 0x100n, 0x100n, 'BAR2 is an I/O resource');
    assert.equal(pci.config[0x3d], 1, 'interrupt pin INTA');

    // The stock driver binds and registers a 32-line chip.
    assert.match(findSection(report, 'bind')?.lines.join('\n') ?? '', /driver=pci-idio-16 enable=1/);
    assert.match(findSection(report, 'chip')?.lines.join('\n') ?? '', /ngpio=32/);

    // Loopback: every output drives its input.
    assert.deepEqual(findSection(report, 'loopback')?.lines, ['line0 high=1 low=0', 'line1 high=1 low=0', 'line9 high=1 low=0', 'line15 high=1 low=0']);

    // Interrupts: the INTx line and IIN0's gpiolib interrupt were counted by the guest.
    const before = findSection(report, 'irq-before')?.lines ?? [];
    const after = findSection(report, 'irq-after')?.lines ?? [];
    const intxBefore = irqCount(before, /IO-APIC/);
    const intxAfter = irqCount(after, /IO-APIC/);
    const gpioAfter = irqCount(after, /gpiolib/);
    assert.ok(intxAfter > intxBefore, `INTx count did not grow: ${intxBefore} -> ${intxAfter}${why}`);
    assert.ok(gpioAfter >= 1, `IIN0 interrupt not counted: ${after.join(' | ')}`);

    // The server saw the guest's accesses.
    assert.ok(dev.stats.configReads > 20, `config reads ${dev.stats.configReads}`);
    assert.ok(dev.stats.barWrites >= 16 && dev.stats.barReads >= 8, JSON.stringify(dev.stats));
    assert.ok(dev.stats.interrupts >= 6, `device raised ${dev.stats.interrupts} interrupts`);
    console.log(`# e2e gpio: boot+script ${res.wallMs} ms; guest view: ${findSection(report, 'bind')?.lines[0]}; ${findSection(report, 'chip')?.lines[0]}; stats ${JSON.stringify(dev.stats)}`);
  } finally {
    await dev.ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
