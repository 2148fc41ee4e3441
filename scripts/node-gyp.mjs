// How the package's scripts run node-gyp: shared by install-addon.mjs (the
// install step, from a tarball or a clone) and prebuild.mjs (pack time).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** node-gyp as npm ships it: the path npm hands lifecycle scripts, npm's own copy, or one on PATH. */
export function nodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(bundled)) return [process.execPath, bundled];
  return ['node-gyp'];
}

/**
 * The headers of the running node when it has them (<prefix>/include/node,
 * as distributions and nodejs.org tarballs install them) and npm named none:
 * otherwise node-gyp downloads them, which fails offline.
 */
export function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = join(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}
