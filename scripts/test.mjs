#!/usr/bin/env node
// Runs the test suite with node's built-in runner. Node 20 cannot expand globs
// for --test, so the files are collected here.
//   node scripts/test.mjs            every suite, including the QEMU end-to-end test
//   node scripts/test.mjs --unit     everything except test/e2e, test/asan and test/install (fast, for daily work)
//   node scripts/test.mjs FILE...    only the given files
// The reporter is TAP when stdout is not a terminal (CI reads its closing
// "# pass N" / "# fail N" lines) and spec otherwise.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const explicit = args.filter((a) => !a.startsWith('--'));

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (unitOnly && (name === 'e2e' || name === 'asan' || name === 'install')) continue;
      if (name === 'fixtures' || name === 'helpers') continue;
      out.push(...collect(p));
    } else if (name.endsWith('.test.ts')) {
      out.push(relative(root, p));
    }
  }
  return out;
}

const files = explicit.length > 0 ? explicit : collect(join(root, 'test'));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const reporter = process.env.TEST_REPORTER ?? (process.stdout.isTTY ? 'spec' : 'tap');
const res = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-reporter=${reporter}`, '--test-concurrency=1', ...files],
  { cwd: root, stdio: 'inherit', env: process.env },
);
process.exit(res.status ?? 1);
