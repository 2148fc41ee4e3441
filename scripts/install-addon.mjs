#!/usr/bin/env node
// The package's install step (package.json "install"): makes sure a native
// addon loads, building one from source only when none does.
//
//   node scripts/install-addon.mjs           what `npm install` / `npm ci` run
//   node scripts/install-addon.mjs --force   build from source regardless (npm run build:addon)
//
// Order, as src/native/binding.ts loads them:
//   1. build/Release/vfio_user_native.node, when it loads and is newer than
//      binding.gyp and every native/ source (a clone after its first build:
//      `npm ci` or `npx vfio-user` leave it alone);
//   2. prebuilds/<platform>-<arch>/vfio_user_native.napi.glibc.node, the addon
//      the npm tarball carries (built at pack time by scripts/prebuild.mjs), when
//      it loads here (glibc new enough, right platform);
//   3. otherwise node-gyp `configure build` from binding.gyp and native/ (needs
//      g++, make and python3). Not `rebuild`: that starts by deleting build/,
//      so an interrupted run would leave no addon at all.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeGyp, nodedirArgs } from './node-gyp.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const force = process.argv.includes('--force');
// Keep these names in step with src/native/binding.ts (this script runs before
// dist/ exists in a clone, so it cannot import the loader).
const built = join(root, 'build', 'Release', 'vfio_user_native.node');
const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'vfio_user_native.napi.glibc.node');

const say = (msg) => console.log(`vfio-user-ts: ${msg}`);

/** Loads the addon in a child process (a failed dlopen must not stay mapped in this one); null when it loads, else why not. */
function loadError(path) {
  if (!existsSync(path)) return 'not found';
  const r = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', path], { encoding: 'utf8' });
  if (r.status === 0) return null;
  const lines = (r.stderr || '').split('\n').filter((l) => /Error/.test(l));
  return lines[0]?.trim() || `exit ${r.status}`;
}

/** The newest modification time of the sources a build depends on. */
function sourcesMtime() {
  let newest = statSync(join(root, 'binding.gyp')).mtimeMs;
  const dir = join(root, 'native');
  for (const name of readdirSync(dir)) {
    if (/\.(cc|h)$/.test(name)) newest = Math.max(newest, statSync(join(dir, name)).mtimeMs);
  }
  return newest;
}

function build() {
  const [cmd, ...pre] = nodeGyp();
  say('building the native addon from source (node-gyp configure build; needs g++, make, python3)');
  const r = spawnSync(cmd, [...pre, 'configure', 'build', ...nodedirArgs()], { cwd: root, stdio: 'inherit' });
  if (r.error || r.status !== 0) {
    console.error(`vfio-user-ts: the addon build failed (${r.error?.message ?? `exit ${r.status}`}); install g++, make and python3, then run "npm rebuild vfio-user-ts"`);
    process.exit(1);
  }
  const err = loadError(built);
  if (err) {
    console.error(`vfio-user-ts: the freshly built ${relative(root, built)} does not load: ${err}`);
    process.exit(1);
  }
  say(`built ${relative(root, built)}`);
}

if (force) {
  build();
} else if (existsSync(built) && statSync(built).mtimeMs >= sourcesMtime() && loadError(built) === null) {
  say(`${relative(root, built)} is up to date`);
} else {
  const why = loadError(prebuilt);
  if (why === null) {
    say(`using the prebuilt addon ${relative(root, prebuilt)}`);
  } else {
    if (existsSync(prebuilt)) say(`the prebuilt addon does not load here (${why})`);
    build();
  }
}
