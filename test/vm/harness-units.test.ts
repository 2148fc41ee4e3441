// The pure parts of the guest harness and `vfio-user vm`: argument parsing,
// the --run script (executed here by a real POSIX shell), the streaming
// console parser, and the device view.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { parseVmArgs } from '../../cli/vm.js';
import { UsageError } from '../../cli/types.js';
import { ConsoleStream } from '../../vm/console-stream.js';
import { bdfOfSocket, describeDevice, irqCapabilities } from '../../vm/describe.js';
import { runGuestArgs } from '../../vm/harness.js';
import { parseGuestReport } from '../../vm/report.js';
import { runLinesScript } from '../../vm/run-lines.js';

test('parseVmArgs: options, repeats, defaults and refusals', () => {
  const a = parseVmArgs(['--mem', '8192', '--smp=2', '--run', 'echo a', '--run=exit 3', '--qemu-arg', '-smbios', '--qemu-arg=type=1', '--console', '--qemu', '/usr/bin/q', 's1', 's2']);
  assert.deepEqual(a, { memMiB: 8192, smp: 2, run: ['echo a', 'exit 3'], console: true, qemu: '/usr/bin/q', qemuArgs: ['-smbios', 'type=1'], timeout: 0, sockets: ['s1', 's2'] });
  assert.deepEqual(parseVmArgs(['s']), { memMiB: 512, smp: 1, run: [], console: false, qemuArgs: [], timeout: 0, sockets: ['s'] });
  for (const bad of [[], ['--mem', '0', 's'], ['--mem', '1.5', 's'], ['--mem', String(2 ** 21), 's'], ['--smp', '-1', 's'], ['--smp', '65', 's'], ['--run'], ['--bogus', 's'], ['--timeout', 'x', 's'], Array.from({ length: 31 }, (_, i) => `s${i}`)]) {
    assert.throws(() => parseVmArgs(bad), UsageError, JSON.stringify(bad));
  }
});

test('runLinesScript: lines share one shell, statuses and quoting survive, exit ends the script', () => {
  const lines = [`cd /; X='it'"'"'s'`, 'echo "$X" $(pwd)', 'false', `printf '%s\\n' "a'b"`, 'exit 6', 'echo never'];
  const r = spawnSync('sh', ['-c', runLinesScript(lines)], { encoding: 'utf8' });
  assert.equal(r.status, 6);
  const report = parseGuestReport(`=== HARNESS BEGIN kernel=k ===\n=== BEGIN run.sh ===\n${r.stdout}=== END run.sh rc=6 ===\n`);
  assert.deepEqual(report.sections.map((s) => [s.name, s.rc]), [['run.sh', 6], ['run 1', 0], ['run 2', 0], ['run 3', 1], ['run 4', 0], ['run 5', null]]);
  assert.deepEqual(report.sections[2]!.lines, ["it's /"]);
  assert.deepEqual(report.sections[4]!.lines, ["a'b"]);
  assert.equal(report.runRc, 6);
});

const CONSOLE = [
  'SeaBIOS (version x)',
  '=== HARNESS BEGIN kernel=6.12 uptime=1 ===',
  '=== BEGIN autoload ===',
  '0000:00:01.0 pci:v0000494Fd00000DC8sv0000494Fsd00000DC8bcFFsc00i00 -> gpio-pci-idio-16',
  '=== END autoload rc=0 ===',
  '=== BEGIN pci 0000:00:01.0 ===',
  'vendor=0x494f', 'device=0x0dc8', 'subsystem_vendor=0x494f', 'subsystem_device=0x0dc8', 'class=0xff0000', 'revision=0x00',
  'irq=21', 'enable=1', 'modalias=pci:v0000494Fd00000DC8sv0000494Fsd00000DC8bcFFsc00i00', 'driver=pci-idio-16',
  'resource 2 0x000000000000c000 0x000000000000c0ff 0x0000000000040101',
  'config_size=256',
  'config 0000: 4f 49 c8 0d 03 01 00 00 00 00 00 ff 00 00 00 00',
  'config 0030: 00 00 00 00 00 00 00 00 00 00 00 00 0b 01 00 00',
  '=== END pci 0000:00:01.0 rc=0 ===',
  '=== BEGIN run.sh ===',
  '=== BEGIN run 1 ===', 'out1', '=== END run 1 rc=0 ===',
  '=== BEGIN run 2 ===', 'out2', '=== END run.sh rc=9 ===',
  '=== BEGIN console ===',
].join('\r\n');

test('ConsoleStream: devices, run sections (one ended by exit), console prompts, in any chunking', () => {
  for (const size of [1, 7, 64, 100000]) {
    const ev: string[] = [];
    const s = new ConsoleStream({
      device: (d) => ev.push(`device ${d.bdf} ${d.driver}`),
      sectionBegin: (n, depth) => ev.push(`begin ${n} ${depth}`),
      output: (l, sec) => ev.push(`out ${sec} ${l}`),
      sectionEnd: (n, rc, depth) => ev.push(`end ${n} ${rc} ${depth}`),
      consoleBegin: () => ev.push('console'),
      raw: (t) => ev.push(`raw ${JSON.stringify(t)}`),
      consoleEnd: (rc) => ev.push(`console-end ${rc}`),
      other: (l) => ev.push(`other ${l}`),
    });
    const text = `${CONSOLE}\r\n\r\nBusyBox\r\nvm# ls\r\n\r\n=== END console rc=3 ===\r\n=== HARNESS DONE ===\r\n`;
    for (let i = 0; i < text.length; i += size) s.feed(text.slice(i, i + size));
    s.end();
    const raw = ev.filter((e) => e.startsWith('raw ')).map((e) => JSON.parse(e.slice(4)) as string).join('');
    assert.equal(raw, '\nBusyBox\nvm# ls\n\n', `chunk ${size}`);
    assert.deepEqual(ev.filter((e) => !e.startsWith('raw ')), [
      'other SeaBIOS (version x)',
      'device 0000:00:01.0 pci-idio-16',
      'begin run 1 1', 'out run 1 out1', 'end run 1 0 1',
      'begin run 2 1', 'out run 2 out2',
      'console', 'console-end 3', 'other === HARNESS DONE ===',
    ], `chunk ${size}`);
  }
});

test('device view: IDs, BARs, interrupt capabilities and use, driver', () => {
  const d = parseGuestReport(CONSOLE).pci[0]!;
  assert.equal(bdfOfSocket(0), '0000:00:01.0');
  assert.equal(bdfOfSocket(15), '0000:00:10.0');
  const view = describeDevice(d, '/run/g.sock');
  assert.match(view, /^0000:00:01\.0 \[494f:0dc8\] class ff0000 rev 00 subsystem \[494f:0dc8\] {2}<- \/run\/g\.sock$/m);
  assert.match(view, /BAR2: I\/O ports at 0xc000 \[size 256\]/);
  assert.match(view, /IRQ: INTx, IRQ 21; offers INTA$/m);
  assert.match(view, /driver: pci-idio-16 \(modalias pci:v0000494F/);
  // A config space with MSI (enabled) then MSI-X (disabled) in its list, and a list that loops.
  const cfg = Buffer.alloc(256);
  cfg.writeUInt16LE(0x10, 6);
  cfg[0x34] = 0x40;
  cfg.set([0x05, 0x50, 0x01, 0x00], 0x40);
  cfg.set([0x11, 0x40, 0x00, 0x00], 0x50);
  assert.deepEqual(irqCapabilities(cfg), { msi: true, msiEnabled: true, msix: true, msixEnabled: false, pin: 0 });
  assert.match(describeDevice({ ...d, config: cfg, msiIrqs: [24] }), /IRQ: MSI, 1 vector \(IRQ 24\); offers MSI, MSI-X/);
});

test('runGuestArgs: every option maps to run-guest.sh', () => {
  assert.deepEqual(
    runGuestArgs({ socket: 'a', sockets: ['b'], memMiB: 8192, smp: 2, qemu: 'q', autoload: true, console: true, deviceOpts: ',"x":1', kernelAppend: 'k', guestOverlayDir: 'o', timeoutMs: 1500, qemuArgs: ['-s'] }, 'run.sh', 'err'),
    ['--socket', 'a', '--socket', 'b', '--script', 'run.sh', '--mem', '8192', '--smp', '2', '--qemu', 'q', '--autoload', '--console', '--device-opts', ',"x":1', '--append', 'k', '--overlay', 'o', '--timeout', '2', '--stderr', 'err', '--', '-s'],
  );
  assert.deepEqual(runGuestArgs({ timeoutMs: 0 }, null, 'e'), ['--timeout', '0', '--stderr', 'e']);
});
