// The library is src/ alone: no module under src/ may import from the
// applications beside it (cli/, samples/, bench/, test/). This keeps the
// package's entry point free of application code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const src = join(root, 'src');

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

test('no module under src/ imports from outside src/', () => {
  const files = tsFiles(src);
  assert.ok(files.length > 50, `expected the library's files, found ${files.length}`);
  const offenders: string[] = [];
  const spec = /(?:from\s+|import\s*\(\s*)'(\.{1,2}\/[^']+)'/g;
  for (const f of files) {
    for (const m of readFileSync(f, 'utf8').matchAll(spec)) {
      const target = resolve(dirname(f), m[1]!);
      if (relative(src, target).startsWith('..')) offenders.push(`${relative(root, f)} -> ${m[1]}`);
    }
  }
  assert.deepEqual(offenders, []);
});

test('vm/ (the guest harness) uses only Node and its own modules', () => {
  const vm = join(root, 'vm');
  const files = tsFiles(vm);
  assert.ok(files.length >= 3, `expected the harness's modules, found ${files.length}`);
  const offenders: string[] = [];
  const spec = /(?:from\s+|import\s*\(\s*)'([^']+)'/g;
  for (const f of files) {
    for (const m of readFileSync(f, 'utf8').matchAll(spec)) {
      const s = m[1]!;
      if (s.startsWith('node:')) continue;
      if (!s.startsWith('.') || relative(vm, resolve(dirname(f), s)).startsWith('..')) offenders.push(`${relative(root, f)} -> ${s}`);
    }
  }
  assert.deepEqual(offenders, []);
});
