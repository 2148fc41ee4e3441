#!/usr/bin/env node
// Pack-time build of the prebuilt addon the npm tarball carries (package.json
// "prepack"; "postpack" runs it with --clean). Never committed: prebuilds/ is
// in .gitignore.
//
//   node scripts/prebuild.mjs          build prebuilds/linux-x64/vfio_user_native.napi.glibc.node
//   node scripts/prebuild.mjs --clean  remove prebuilds/ again
//
// The addon is compiled from a copy of binding.gyp and native/ in a temporary
// directory, so the checkout's own build/ is neither rebuilt nor deleted. It
// is N-API, so one file serves every Node version. Packing is refused on
// anything but linux-x64 with glibc (the tarball promises that prebuild), and
// when the result needs a newer glibc than GLIBC_FLOOR: the highest GLIBC_
// symbol version `objdump -T` lists is what a system must have for it to load
// (older systems build from source at install, see scripts/install-addon.mjs).
// Before packing, dist/ is removed so that `prepare` (tsc, which npm runs
// right after prepack) ships no stale output of deleted sources.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeGyp, nodedirArgs } from './node-gyp.mjs';

/** The newest glibc the prebuilt addon may need (Debian 12 builds need 2.34: pthread_kill, pthread_once and pthread_cond_clockwait, which moved into libc in 2.34, for the dedicated-thread mode's loop watcher). */
export const GLIBC_FLOOR = '2.34';

const root = fileURLToPath(new URL('..', import.meta.url));
const target = `${process.platform}-${process.arch}`;
const outDir = join(root, 'prebuilds', target);
const outFile = join(outDir, 'vfio_user_native.napi.glibc.node');

const fail = (msg) => {
  console.error(`prebuild: ${msg}`);
  process.exit(1);
};

/** Compares dotted versions numerically. */
export function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The highest GLIBC_x.y symbol version a shared object needs (objdump -T). */
export function glibcNeeded(file) {
  const out = execFileSync('objdump', ['-T', file], { encoding: 'utf8' });
  const versions = [...out.matchAll(/\bGLIBC_(\d+(?:\.\d+)+)\b/g)].map((m) => m[1]);
  return versions.sort(compareVersions).at(-1) ?? '0';
}

function main() {
  if (process.argv.includes('--clean')) {
    rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
    return;
  }
  const glibc = process.report?.getReport().header.glibcVersionRuntime;
  if (target !== 'linux-x64' || !glibc) {
    fail(`the tarball carries a linux-x64 glibc addon; pack it on linux-x64 with glibc (this is ${target}${glibc ? '' : ', not glibc'})`);
  }
  const work = mkdtempSync(join(tmpdir(), 'vfio-user-prebuild-'));
  try {
    copyFileSync(join(root, 'binding.gyp'), join(work, 'binding.gyp'));
    cpSync(join(root, 'native'), join(work, 'native'), { recursive: true, filter: (p) => !p.endsWith('.sh') });
    // binding.gyp asks node-addon-api for its include dir: let it resolve from here.
    symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'));
    writeFileSync(join(work, 'package.json'), '{"name":"vfio-user-ts-prebuild","private":true}\n');
    const [cmd, ...pre] = nodeGyp();
    const r = spawnSync(cmd, [...pre, 'rebuild', '--loglevel=error', ...nodedirArgs()], { cwd: work, stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.error || r.status !== 0) fail(`node-gyp failed (${r.error?.message ?? `exit ${r.status}`})`);
    const built = join(work, 'build', 'Release', 'vfio_user_native.node');
    const needs = glibcNeeded(built);
    if (compareVersions(needs, GLIBC_FLOOR) > 0) fail(`the addon needs GLIBC_${needs}, above the stated floor ${GLIBC_FLOOR}`);
    const load = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', built], { encoding: 'utf8' });
    if (load.status !== 0) fail(`the built addon does not load: ${load.stderr}`);
    mkdirSync(outDir, { recursive: true });
    copyFileSync(built, outFile);
    rmSync(join(root, 'dist'), { recursive: true, force: true });
    console.log(`prebuild: prebuilds/${target}/vfio_user_native.napi.glibc.node (needs glibc >= ${needs})`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
