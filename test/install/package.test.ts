// The npm tarball as a user gets it: packed from a clean copy of the checkout
// (prepack builds the prebuilt addon), installed into an empty project with
// only node and npm on PATH (no compiler, make or python: a build could not
// happen), then used: a sample device from its subpath export, the client
// subpath, `npx vfio-user probe`, and a TypeScript consumer of the exports.
// Last, a prebuild that cannot load makes `npm rebuild` build from source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { copyCheckout, mustRun, nodeOnlyEnv, probeTimerServer, root, run, startUntil, tempDir, which } from './tools.js';

const PREBUILD = 'prebuilds/linux-x64/vfio_user_native.napi.glibc.node';

const DEVICE = `
import { createGpioDevice } from 'vfio-user-ts/samples/gpio';
const d = createGpioDevice();
await d.ctx.listen(process.argv[2]);
console.log('listening');
`;

const CLIENT = `
import { VfioUserClient } from 'vfio-user-ts/client';
import { DeviceContext } from 'vfio-user-ts';
import { createNvmeDevice } from 'vfio-user-ts/samples/nvme';
import { createTimerDevice } from 'vfio-user-ts/samples/timer';
const timer = createTimerDevice();
if (!(timer.ctx instanceof DeviceContext) || typeof createNvmeDevice !== 'function') throw new Error('subpath exports disagree');
const c = await VfioUserClient.connect(process.argv[2]);
const id = await c.regionRead(7, 0, 4);
console.log('config ' + Buffer.from(id).toString('hex'));
await c.close();
await timer.ctx.close();
`;

const CONSUMER = `
import { DeviceContext, consoleLogger } from 'vfio-user-ts';
import { VfioUserClient } from 'vfio-user-ts/client';
import { createNvmeDevice, type NvmeDevice } from 'vfio-user-ts/samples/nvme';
import { createGpioDevice, type GpioDevice } from 'vfio-user-ts/samples/gpio';
import { createTimerDevice, type TimerDevice } from 'vfio-user-ts/samples/timer';
const gpio: GpioDevice = createGpioDevice({ logger: consoleLogger('info') });
const ctx: DeviceContext = gpio.ctx;
const client: Promise<VfioUserClient> = VfioUserClient.connect('/run/x.sock');
const nvme: (o: { backing: string; size: number }) => NvmeDevice = createNvmeDevice;
const timer: () => TimerDevice = createTimerDevice;
export { ctx, client, nvme, timer };
`;

interface Prebuild {
  GLIBC_FLOOR: string;
  glibcNeeded(file: string): string;
  compareVersions(a: string, b: string): number;
}

test('the packed tarball installs without a compiler, then runs a device and the probe', async (t) => {
  const { dir, cleanup } = tempDir('vfio-user-pkg-');
  t.after(cleanup);

  // Pack from a clean copy, as `npm pack` in a fresh clone would.
  const clone = join(dir, 'clone');
  copyCheckout(clone);
  symlinkSync(join(root, 'node_modules'), join(clone, 'node_modules'));
  await mustRun(process.execPath, [which('npm'), 'pack', '--pack-destination', dir], { cwd: clone });
  const tgz = join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz'))!);
  assert.ok(!existsSync(join(clone, 'prebuilds')), 'postpack removes prebuilds/ from the checkout');

  const files = new Set(execFileSync('tar', ['tzf', tgz], { encoding: 'utf8' }).split('\n').filter(Boolean).map((f) => f.replace(/^package\//, '')));
  // vm/: the guest harness `vfio-user vm` runs (its scripts beside the compiled module's package root).
  for (const f of ['LICENSE', PREBUILD, 'scripts/install-addon.mjs', 'binding.gyp', 'native/addon.cc', 'dist/cli/main.js', 'dist/cli/vm.js', 'dist/vm/harness.js', 'vm/setup.sh', 'vm/run-guest.sh', 'vm/guest-init.sh']) {
    assert.ok(files.has(f), `the tarball carries ${f}`);
  }
  const shipped = [...files];
  for (const bad of [/^test\//, /^bench\//, /^build\//, /^scripts\/(fuzz\.mjs|test\.mjs|test-asan\.sh|prebuild\.mjs)$/, /^native\/.*\.sh$/]) {
    assert.deepEqual(shipped.filter((f) => bad.test(f)), [], `nothing matching ${bad} is shipped (it needs what is not shipped)`);
  }
  // Every file package.json points at is in the tarball.
  const pkg = JSON.parse(readFileSync(join(clone, 'package.json'), 'utf8')) as {
    license: string;
    main: string;
    types: string;
    bin: Record<string, string>;
    exports: Record<string, string | { types: string; default: string }>;
  };
  const targets = [pkg.main, pkg.types, ...Object.values(pkg.bin)];
  for (const e of Object.values(pkg.exports)) targets.push(...(typeof e === 'string' ? [e] : [e.types, e.default]));
  for (const f of targets) assert.ok(files.has(f.replace(/^\.\//, '')), `package.json names ${f}, which the tarball carries`);
  assert.equal(pkg.license, 'BSD-3-Clause');
  const license = readFileSync(join(clone, 'LICENSE'), 'utf8');
  assert.match(license, /^BSD 3-Clause License\n\nCopyright \(c\) \d{4}, the vfio-user-ts authors\n/);

  // Install into an empty project with only node and npm on PATH.
  const env = nodeOnlyEnv(dir);
  const npm = join(dir, 'bin', 'npm');
  const npx = join(dir, 'bin', 'npx');
  const proj = join(dir, 'proj');
  mkdirSync(proj);
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
  const inst = await mustRun(npm, ['install', '--foreground-scripts', tgz], { cwd: proj, env });
  const installed = join(proj, 'node_modules', 'vfio-user-ts');
  assert.match(inst.stdout, /using the prebuilt addon prebuilds\/linux-x64\/vfio_user_native\.napi\.glibc\.node/);
  assert.ok(!existsSync(join(installed, 'build')), 'no build/ directory: nothing was compiled');
  // `npm pack` ran prepare: the server command's one-file bundle ships.
  assert.ok(existsSync(join(installed, 'dist', 'cli', 'server.bundle.js')), 'the tarball holds dist/cli/server.bundle.js');

  // The prebuild needs no newer glibc than the stated floor.
  const pre = (await import(pathToFileURL(join(root, 'scripts', 'prebuild.mjs')).href)) as Prebuild;
  const needs = pre.glibcNeeded(join(installed, PREBUILD));
  assert.ok(pre.compareVersions(needs, pre.GLIBC_FLOOR) <= 0, `the prebuild needs GLIBC_${needs}, floor ${pre.GLIBC_FLOOR}`);

  // A device from the package, driven by the package's client and probe.
  writeFileSync(join(proj, 'device.mjs'), DEVICE);
  writeFileSync(join(proj, 'client.mjs'), CLIENT);
  const useDevice = async (sock: string): Promise<void> => {
    const device = await startUntil(process.execPath, ['device.mjs', sock], /listening/, { cwd: proj, env });
    try {
      const probe = await mustRun(npx, ['vfio-user', 'probe', sock], { cwd: proj, env });
      assert.match(probe.stdout, /Device 494f:0dc8 class ff00/);
      assert.match(probe.stdout, /BAR2 +size 0x100/);
      const client = await mustRun(process.execPath, ['client.mjs', sock], { cwd: proj, env });
      assert.match(client.stdout, /config 4f49c80d/);
    } finally {
      device.kill('SIGTERM');
    }
  };
  await useDevice(join(dir, 'gpio.sock'));

  // The exports' types resolve for a TypeScript consumer (NodeNext).
  writeFileSync(join(proj, 'consumer.ts'), CONSUMER);
  writeFileSync(
    join(proj, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        strict: true,
        noEmit: true,
        types: ['node'],
        typeRoots: [join(root, 'node_modules', '@types')],
      },
      files: ['consumer.ts'],
    }),
  );
  const tsc = await run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: proj });
  assert.equal(tsc.code, 0, `tsc on a consumer of the exports: ${tsc.stdout}${tsc.stderr}`);

  // A prebuild that cannot load: the install step builds from source instead.
  writeFileSync(join(installed, PREBUILD), 'not an ELF file');
  const rebuild = await mustRun(which('npm'), ['rebuild', '--foreground-scripts', 'vfio-user-ts'], { cwd: proj });
  assert.match(rebuild.stdout, /the prebuilt addon does not load here/);
  assert.match(rebuild.stdout, /built build\/Release\/vfio_user_native\.node/);
  assert.ok(existsSync(join(installed, 'build', 'Release', 'vfio_user_native.node')));
  await useDevice(join(dir, 'gpio2.sock'));

  // Last, as it breaks the package's library: `npx vfio-user server` runs from
  // the one-file bundle (the installed files' times leave it fresh), so it
  // still serves the probe with the library's server modules gone.
  rmSync(join(installed, 'dist', 'src', 'server'), { recursive: true });
  assert.match(await probeTimerServer(npx, ['vfio-user'], join(dir, 'timer.sock'), { cwd: proj, env }), /Device: flags RESET PCI; 9 regions, 5 IRQ types/);
});
