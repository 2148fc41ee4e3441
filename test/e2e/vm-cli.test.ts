// `vfio-user vm` as a user runs it (the CLI from the sources, in a child
// process): the guest's view of two devices bound by their stock drivers,
// --run lines in one shell with the last one's status as the exit status,
// --smp/--mem/--qemu/--qemu-arg reaching the guest, an extra guest module
// (VFIO_USER_VM_MODULES) bound to a QEMU device by modalias, an interactive console driven
// through a pty, and the clear errors when it cannot run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createGpioDevice } from '../../samples/gpio-device.js';
import { createNvmeDevice } from '../../samples/nvme/index.js';
import { collectingLogger, ensureHarness } from './qemu.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const entry = join(root, 'cli', 'run.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `vfio-user ARGS` from the sources; a watchdog fails a hung run. */
function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      child.kill('SIGINT');
      reject(new Error(`vfio-user ${args.join(' ')} hung\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 300_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'vfu-e2e-vm-cli-'));
const gpioSock = join(dir, 'gpio.sock');
const nvmeSock = join(dir, 'nvme.sock');
const gpioLog = collectingLogger();
const nvmeLog = collectingLogger();
const gpio = createGpioDevice({ logger: gpioLog.logger });
const nvme = createNvmeDevice({ backing: join(dir, 'disk.img'), size: 16 << 20, logger: nvmeLog.logger });

before(async () => {
  await ensureHarness();
  await gpio.ctx.listen(gpioSock);
  await nvme.ctx.listen(nvmeSock);
});
after(async () => {
  await gpio.ctx.close();
  await nvme.close();
  rmSync(dir, { recursive: true, force: true });
});

test('vfio-user vm: device views, --run lines in one shell, exit status of the last line (with --qemu)', { timeout: 10 * 60_000 }, async () => {
  // --qemu: an installed QEMU, here a wrapper around the cache's own (the host's may be too old).
  const h = await ensureHarness();
  // The guest with the extra module is built first, so that the run below prints only what it should.
  const saved = process.env.VFIO_USER_VM_MODULES;
  process.env.VFIO_USER_VM_MODULES = 'e1000e';
  try {
    await ensureHarness();
  } finally {
    if (saved === undefined) delete process.env.VFIO_USER_VM_MODULES;
    else process.env.VFIO_USER_VM_MODULES = saved;
  }
  const qemu = join(dir, 'my-qemu');
  writeFileSync(
    qemu,
    `#!/bin/sh\necho "$*" >> '${qemu}.log'\nr='${h.root}'\nexec "$r/lib64/ld-linux-x86-64.so.2" --library-path "$r/usr/lib/x86_64-linux-gnu:$r/lib/x86_64-linux-gnu" ` +
      `"$r/usr/bin/qemu-system-x86_64" -L "$r/usr/share/seabios" -L "$r/usr/share/qemu" "$@"\n`,
  );
  chmodSync(qemu, 0o755);
  const r = await cli([
    'vm', '--qemu', qemu, '--smp', '2', '--mem', '768', '--qemu-arg', '-smbios', '--qemu-arg', 'type=1,serial=from-the-cli',
    // One of QEMU's own devices, whose driver the guest gets from VFIO_USER_VM_MODULES and loads by modalias.
    '--qemu-arg', '-netdev', '--qemu-arg', 'user,id=n0', '--qemu-arg', '-device', '--qemu-arg', 'e1000e,netdev=n0,addr=0x10',
    '--run', 'echo nic=$(basename $(readlink /sys/bus/pci/devices/0000:00:10.0/driver))',
    '--run', 'cd /sys/class/dmi/id && X=$(cat product_serial)',
    '--run', 'echo "serial=$X cpus=$(nproc) pwd=$(pwd)"; grep MemTotal /proc/meminfo',
    '--run', 'dd if=/dev/nvme0n1 bs=4k count=1 iflag=direct 2>/dev/null | wc -c; ls /sys/class/gpio | grep gpiochip',
    '--run', 'echo last; sh -c "exit 3"',
    gpioSock, nvmeSock,
  ], { env: { ...process.env, VFIO_USER_VM_MODULES: 'e1000e' } });
  const why = `\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
  assert.equal(r.code, 3, why);
  assert.match(readFileSync(`${qemu}.log`, 'utf8'), /-kernel .*-device \{"driver":"vfio-user-pci"/, 'the --qemu binary booted the guest');
  // The guest's view of each device, with the stock driver loaded by modalias.
  assert.match(r.stdout, /^0000:00:01\.0 \[494f:0dc8\] class ff0000 .*<- .*gpio\.sock$/m, why);
  assert.match(r.stdout, /BAR2: I\/O ports at 0x[0-9a-f]+ \[size 256\]/, why);
  assert.match(r.stdout, /IRQ: INTx, IRQ \d+; offers INTA/, why);
  assert.match(r.stdout, /driver: pci-idio-16 \(modalias pci:v0000494Fd00000DC8/, why);
  assert.match(r.stdout, /^0000:00:02\.0 \[4e56:[0-9a-f]{4}\] class 010802 .*<- .*nvme\.sock$/m, why);
  assert.match(r.stdout, /BAR0: memory at 0x[0-9a-f]+ \[size \d+K\] 64-bit/, why);
  assert.match(r.stdout, /IRQ: MSI-X, \d+ vectors \(IRQ [\d ]+\); offers INTA, MSI-X/, why);
  assert.match(r.stdout, /driver: nvme \(modalias pci:v00004E56/, why);
  // --run lines, echoed and in one shell (cd and X carried over), with --smp, --mem and --qemu-arg visible.
  assert.match(r.stdout, /^vm# cd \/sys\/class\/dmi\/id && X=\$\(cat product_serial\)$/m);
  assert.match(r.stdout, /^serial=from-the-cli cpus=2 pwd=\/sys\/class\/dmi\/id$/m, why);
  const kb = Number(/MemTotal:\s+(\d+) kB/.exec(r.stdout)?.[1]);
  assert.ok(kb > 700 * 1024 && kb <= 768 * 1024, `MemTotal ${kb} kB${why}`);
  assert.match(r.stdout, /^4096\ngpiochip\d+$/m, why);
  assert.match(r.stdout, /^last$/m);
  assert.match(r.stdout, /^nic=e1000e$/m, why);
  assert.doesNotMatch(r.stdout, /^0000:00:10\.0/m, 'only the sockets\' devices are described');
  // Nothing of the harness's report leaks into the output, and QEMU printed nothing.
  assert.doesNotMatch(r.stdout, /===|IO-APIC|SeaBIOS/, why);
  assert.equal(r.stderr, '', why);
  assert.deepEqual(gpioLog.unexpected(), []);
  assert.deepEqual(nvmeLog.unexpected(), []);
});

// A line that exits the guest shell (its status then ends the run) is covered
// by test/vm/harness-units.test.ts with a real shell; no extra boot for it.

/** Drives `vfio-user vm --console` through a pseudo-terminal (python3's pty module). */
const PTY_DRIVER = String.raw`
import os, pty, sys, time, select
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
buf = b''
def until(pat, timeout=300):
    global buf
    end = time.time() + timeout
    while pat not in buf:
        r, _, _ = select.select([fd], [], [], max(0, end - time.time()))
        if not r:
            sys.stdout.write(buf.decode('utf8', 'replace')); sys.exit('timeout waiting for %r' % pat)
        try:
            d = os.read(fd, 4096)
        except OSError:
            d = b''
        if not d:
            sys.stdout.write(buf.decode('utf8', 'replace')); sys.exit('eof waiting for %r' % pat)
        buf += d
until(b'console (exit')
until(b'vm# ')
os.write(fd, b'echo hi-$((6*7)) $(tty)\r')
until(b'hi-42')
until(b'vm# ', 60)
os.write(fd, b'sleep 100\r')
time.sleep(2)
os.write(fd, b'\x03')            # ^C reaches the guest's shell, not QEMU
until(b'vm# ', 60)
os.write(fd, b'exit 5\r')
while True:
    try:
        d = os.read(fd, 4096)
    except OSError:
        break
    if not d:
        break
    buf += d
_, st = os.waitpid(pid, 0)
sys.stdout.write(buf.decode('utf8', 'replace'))
print('\nSTATUS %d' % os.waitstatus_to_exitcode(st))
`;

test('vfio-user vm --console: an interactive shell through a pty; ^C stays in the guest; exit status is the shell\'s', { timeout: 10 * 60_000 }, async () => {
  const driver = join(dir, 'console-driver.py');
  writeFileSync(driver, PTY_DRIVER);
  const r = await new Promise<Run>((resolve, reject) => {
    const child = spawn('python3', [driver, process.execPath, '--import', 'tsx', entry, 'vm', '--console', '--run', 'echo before-console', gpioSock], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  const why = `\n--- pty ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
  assert.equal(r.code, 0, why);
  assert.match(r.stdout, /driver: pci-idio-16/, why);
  assert.match(r.stdout, /^before-console\r?$/m, why);
  assert.match(r.stdout, /^hi-42 \/dev\/ttyS0\r?$/m, why);
  assert.match(r.stdout, /\nSTATUS 5\n/, why);
});

test('vfio-user vm: clear errors (bad socket, no QEMU with vfio-user-pci, not root the first time, no package access)', { timeout: 5 * 60_000 }, async () => {
  const notSock = join(dir, 'plain-file');
  writeFileSync(notSock, '');
  let r = await cli(['vm', notSock]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /plain-file is not a UNIX socket: start the vfio-user server first/);

  // A QEMU without vfio-user-pci (an old one, as a script saying what QEMU 9 says).
  const oldQemu = join(dir, 'qemu-9');
  writeFileSync(oldQemu, '#!/bin/sh\necho "qemu-system-x86_64: -device vfio-user-pci,help: Device \'vfio-user-pci\' not found" >&2\nexit 1\n');
  chmodSync(oldQemu, 0o755);
  r = await cli(['vm', '--qemu', oldQemu, gpioSock]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /qemu-9 has no vfio-user-pci device with a socket property \(QEMU 10\.1 or later is needed\)/);

  // The first run (an empty cache) as a user who is not root.
  const userCache = join(dir, 'user-cache');
  mkdirSync(userCache);
  chownSync(userCache, 65534, 65534);
  chmodSync(dir, 0o755);
  r = await cli(['vm', gpioSock], { env: { ...process.env, VFIO_USER_VM_CACHE: userCache }, uid: 65534, gid: 65534 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /first run builds the guest in .*user-cache .* needs root; run once as root/);

  // As root, but the package mirror cannot be reached.
  const rootCache = join(dir, 'root-cache');
  r = await cli(['vm', gpioSock], { env: { ...process.env, VFIO_USER_VM_CACHE: rootCache, VFIO_USER_E2E_MIRROR: 'http://127.0.0.1:9/debian' } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /debootstrap trixie from http:\/\/127\.0\.0\.1:9\/debian failed \(no access to the Debian mirror\?/);
});
