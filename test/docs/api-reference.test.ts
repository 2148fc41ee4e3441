// The API reference (`npm run docs`, TypeDoc with typedoc.json) builds
// without a single warning, and a warning fails the build: an export without
// a doc comment makes TypeDoc exit non-zero with the project's settings.
// `npm run docs` writes the reference to docs/api/ (not committed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TYPEDOC = join(ROOT, 'node_modules/typedoc/bin/typedoc');

function typedoc(cwd: string, args: string[] = []): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [TYPEDOC, ...args], { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.replace(/\x1b\[[0-9;]*m/g, '') };
}

test('npm run docs: the API reference builds with no warning (every export documented)', { timeout: 180_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), 'vfu-api-'));
  try {
    const r = typedoc(ROOT, ['--out', out]);
    const warnings = r.output.split('\n').filter((l) => /\[(warning|error)\]/.test(l));
    assert.equal(r.status, 0, `typedoc failed:\n${warnings.join('\n') || r.output}`);
    assert.deepEqual(warnings, []);
    for (const page of ['index.html', 'classes/DeviceContext.html', 'classes/VfioUserClient.html', 'functions/migrate.html']) {
      assert.ok(existsSync(join(out, page)), `${page} generated`);
    }
    // The device guide's entry points carry their doc comments into the reference.
    assert.match(readFileSync(join(out, 'classes/DeviceContext.html'), 'utf8'), /served to one client at a time/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('typedoc.json: an undocumented export fails the build', { timeout: 180_000 }, () => {
  const config = JSON.parse(readFileSync(join(ROOT, 'typedoc.json'), 'utf8')) as Record<string, unknown>;
  const dir = mkdtempSync(join(tmpdir(), 'vfu-api-neg-'));
  try {
    // The project's settings, on a one-file project of its own.
    writeFileSync(join(dir, 'typedoc.json'), JSON.stringify({ ...config, entryPoints: ['x.ts'], tsconfig: 'tsconfig.json', out: 'out' }));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: [] }, include: ['x.ts'] }));
    writeFileSync(join(dir, 'x.ts'), 'export const undocumented = 1;\n');
    const bad = typedoc(dir);
    assert.notEqual(bad.status, 0, `an undocumented export must fail the build:\n${bad.output}`);
    // Failing for that reason, not another (the first test shows a documented project passes).
    assert.match(bad.output, /undocumented \(Variable\).*does not have any documentation/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
