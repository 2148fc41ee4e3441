// The tools (tools/check, tools/trace) are applications of the library:
// they import from src/ and from tools/ only, never from test/, cli/ or
// samples/, so they work against any server from an installed package.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : n.endsWith('.ts') ? [p] : [];
  });
}

test('tools/ imports only from src/ and tools/', () => {
  const files = tsFiles(join(root, 'tools'));
  assert.ok(files.length >= 20, `found ${files.length} files`);
  const bad: string[] = [];
  for (const f of files) {
    for (const m of readFileSync(f, 'utf8').matchAll(/(?:from\s+|import\s*\(\s*)'(\.{1,2}\/[^']+)'/g)) {
      const target = relative(root, resolve(dirname(f), m[1]!));
      if (!target.startsWith('src/') && !target.startsWith('tools/')) bad.push(`${relative(root, f)} -> ${m[1]}`);
    }
  }
  assert.deepEqual(bad, []);
});
