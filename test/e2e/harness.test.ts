// The guest harness itself (vm/): QEMU boots the guest without a device and
// the per-run script's output comes back parsed. Several devices, --smp,
// --mem, extra QEMU arguments and modalias loading are exercised by the boots
// of vm-cli.test.ts and production.test.ts (one boot serves many checks).
import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { test } from 'node:test';
import { bootGuest, ensureHarness, findSection, parseGuestReport, qemuProblems } from './qemu.js';

test('parseGuestReport: sections, nesting, pci, interrupts', () => {
  const text = [
    'SeaBIOS noise',
    '=== HARNESS BEGIN kernel=6.12.1-amd64 uptime=1.0 ===',
    '=== BEGIN pci 0000:00:01.0 ===',
    'vendor=0x494f',
    'device=0x0dc8',
    'subsystem_vendor=0x0000',
    'subsystem_device=0x0000',
    'class=0x000000',
    'irq=10',
    'driver=-',
    'resource 2 0x000000000000c000 0x000000000000c0ff 0x0000000000040101',
    'config_size=256',
    'config 0000: 4f 49 c8 0d 03 01 00 00 00 00 00 00 00 00 00 00',
    '=== END pci 0000:00:01.0 rc=0 ===',
    '=== BEGIN run.sh ===',
    'top',
    '=== BEGIN inner ===',
    'in',
    '=== END inner rc=3 ===',
    '=== END run.sh rc=0 ===',
    '=== BEGIN interrupts ===',
    '           CPU0',
    ' 21:          7   IO-APIC  21-fasteoi   0000:00:01.0',
    'NMI:          0   Non-maskable interrupts',
    '=== END interrupts rc=0 ===',
    '=== HARNESS DONE uptime=2.0 ===',
  ].join('\r\n');
  const r = parseGuestReport(text);
  assert.equal(r.started, true);
  assert.equal(r.done, true);
  assert.equal(r.kernelVersion, '6.12.1-amd64');
  assert.equal(r.pci.length, 1);
  const d = r.pci[0]!;
  assert.equal(d.vendor, 0x494f);
  assert.equal(d.device, 0x0dc8);
  assert.equal(d.irq, 10);
  assert.equal(d.driver, null);
  assert.deepEqual(d.resources, [{ index: 2, start: 0xc000n, end: 0xc0ffn, flags: 0x40101n }]);
  assert.equal(d.config.readUInt16LE(0), 0x494f);
  assert.equal(r.runRc, 0);
  assert.deepEqual(r.sections.map((s) => [s.name, s.rc, s.depth]), [['run.sh', 0, 0], ['inner', 3, 1]]);
  assert.deepEqual(findSection(r, 'inner')?.lines, ['in']);
  assert.equal(findSection(r, 'run.sh')?.lines.length, 4);
  assert.deepEqual(r.interrupts[0], { irq: '21', counts: [7], info: 'IO-APIC 21-fasteoi 0000:00:01.0' });
});

test('parseGuestReport: a console cut off mid-run', () => {
  const r = parseGuestReport('=== HARNESS BEGIN kernel=k uptime=1 ===\n=== BEGIN run.sh ===\npartial\n');
  assert.equal(r.done, false);
  assert.equal(r.runRc, null);
  assert.equal(findSection(r, 'run.sh')?.rc, null);
  assert.deepEqual(findSection(r, 'run.sh')?.lines, ['partial']);
});

test('QEMU boots the guest without a device and runs the guest script', { timeout: 20 * 60_000 }, async (t) => {
  const h = await ensureHarness();
  t.diagnostic(`${h.qemuVersion}; guest kernel ${h.kernelVersion}; cache ${h.cache}`);
  const res = await bootGuest({
    socket: null,
    guestScript: 'echo hello\nuname -r\nsection nested sh -c "echo inside; exit 3"\necho after\n',
    timeoutMs: 120_000,
  });
  t.diagnostic(`boot without device: ${res.wallMs} ms wall (QEMU start to exit)`);
  const report = parseGuestReport(res.console);
  assert.equal(res.exitCode, 0, `QEMU exit status ${res.exitCode}\n${res.runnerLog}\n${res.console}`);
  assert.deepEqual(qemuProblems(res.qemuStderr), [], 'QEMU printed on stderr');
  assert.ok(report.started, 'guest /init never started');
  assert.ok(report.done, 'guest did not reach the end of /init');
  assert.match(res.console, /reboot: Power down/);
  // KVM exactly when /dev/kvm can be opened for reading and writing, TCG otherwise.
  let kvm = false;
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
    kvm = true;
  } catch {
    // no usable KVM here
  }
  assert.match(res.runnerLog, new RegExp(`accel=${kvm ? 'kvm' : 'tcg'} smp=1 mem=512M devices=0`), res.runnerLog);
  assert.equal(report.kernelVersion, h.kernelVersion);

  const run = findSection(report, 'run.sh');
  assert.ok(run, 'no run.sh section');
  assert.equal(run.rc, 0);
  assert.equal(run.lines[0], 'hello');
  assert.equal(run.lines[1], h.kernelVersion);
  assert.equal(run.lines.at(-1), 'after');
  const nested = findSection(report, 'nested');
  assert.equal(nested?.rc, 3);
  assert.deepEqual(nested?.lines, ['inside']);

  // q35 with -nodefaults: only Intel chipset functions, no driver-less extras.
  assert.ok(report.pci.length >= 3, `pci devices: ${report.pci.map((d) => d.bdf).join(' ')}`);
  assert.ok(report.pci.every((d) => d.vendor === 0x8086));
  const host = report.pci.find((d) => d.bdf === '0000:00:00.0');
  assert.equal(host?.config.readUInt16LE(0), 0x8086);
  assert.ok(report.interrupts.some((i) => i.info.includes('timer')));
});
