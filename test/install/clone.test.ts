// A fresh clone after `npm ci`: the CLI runs as typed, as `npx vfio-user`
// and as `./bin/vfio-user.js`, and nothing a user types rebuilds or deletes
// the addon `npm ci` built (npx installs the clone itself into its cache and
// runs its install step; a second `npm ci` runs it again). `vfio-user server`
// runs from the one-file bundle npm ci built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { copyCheckout, mustRun, probeTimerServer, run, tempDir, which } from './tools.js';

test('in a fresh clone after npm ci, npx vfio-user and bin/vfio-user.js run without touching the addon', async (t) => {
  const { dir, cleanup } = tempDir('vfio-user-clone-');
  t.after(cleanup);
  const clone = join(dir, 'clone');
  copyCheckout(clone);
  const npm = which('npm');
  const npx = which('npx');
  const env = { ...process.env, npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false' };

  const ci = await mustRun(npm, ['ci', '--foreground-scripts'], { cwd: clone, env });
  assert.match(ci.stdout, /built build\/Release\/vfio_user_native\.node/, 'the first npm ci builds the addon');
  const addon = join(clone, 'build', 'Release', 'vfio_user_native.node');
  const before = statSync(addon);
  const unchanged = (what: string): void => {
    const now = statSync(addon);
    assert.equal(now.ino, before.ino, `${what} replaced the addon`);
    assert.equal(now.mtimeMs, before.mtimeMs, `${what} rebuilt the addon`);
  };

  const version = (JSON.parse(readFileSync(join(clone, 'package.json'), 'utf8')) as { version: string }).version;
  const viaNpx = await mustRun(npx, ['vfio-user', '--version'], { cwd: clone, env });
  assert.match(viaNpx.stdout, new RegExp(`^vfio-user-ts ${version.replace(/\./g, '\\.')}\\n`));
  unchanged('npx vfio-user');

  const direct = await mustRun(join(clone, 'bin', 'vfio-user.js'), ['help'], { cwd: clone, env });
  assert.match(direct.stdout, /usage: vfio-user/);
  unchanged('./bin/vfio-user.js');

  const again = await mustRun(npm, ['ci', '--foreground-scripts'], { cwd: clone, env });
  assert.match(again.stdout, /build\/Release\/vfio_user_native\.node is up to date/);
  unchanged('a second npm ci');

  // npm ci bundled `vfio-user server` after tsc (scripts/bundle-cli.mjs), and
  // the CLI loads that file: with the library's server modules gone from
  // dist/ it still serves the probe, and a usage error still reads as one
  // (main.js and the bundle share the CLI's error class).
  const cli = join(clone, 'dist', 'cli');
  assert.ok(statSync(join(cli, 'server.bundle.js')).mtimeMs >= statSync(join(cli, 'server.js')).mtimeMs, 'npm ci bundles the server command after tsc');
  rmSync(join(clone, 'dist', 'src', 'server'), { recursive: true });
  const bin = join(clone, 'bin', 'vfio-user.js');
  const usage = await run(bin, ['server', '--socket-mode', '999', join(dir, 'x.sock')], { cwd: clone, env });
  assert.equal(usage.code, 2, usage.stderr);
  assert.match(usage.stderr, /^vfio-user server: --socket-mode 999: expected an octal mode[^]*usage: vfio-user server/);
  assert.match(await probeTimerServer(bin, [], join(dir, 'timer.sock'), { cwd: clone, env }), /Device: flags RESET PCI; 9 regions, 5 IRQ types/);
});
