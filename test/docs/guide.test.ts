// The TypeScript in the README and the docs cannot rot:
// - a block preceded by `<!-- quote: FILE#NAME -->` must be, character for
//   character, the `// #region NAME` of FILE (docs/examples/*, type-checked
//   with the tests and driven by test/docs/my-device.test.ts);
// - every other ```ts block is compiled with tsc, strict, each block a module
//   of its own beside a copy of docs/examples/, `vfio-user-ts` resolving to
//   this checkout's src/index.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { codeBlocks, type CodeBlock } from '../helpers/markdown.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const EXAMPLES = join(ROOT, 'docs/examples');

interface TsBlock extends CodeBlock {
  file: string;
  /** FILE#NAME when the block quotes a region. */
  quote: string | null;
}

function tsBlocks(): TsBlock[] {
  const out: TsBlock[] = [];
  for (const file of DOCS) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    const lines = text.split('\n');
    for (const b of codeBlocks(text)) {
      if (b.lang !== 'ts' && b.lang !== 'typescript') continue;
      // The quote marker is the last non-blank line before the fence.
      let i = b.line - 2;
      while (i >= 0 && lines[i]!.trim() === '') i--;
      const m = i >= 0 ? /^<!--\s*quote:\s*(\S+)\s*-->$/.exec(lines[i]!.trim()) : null;
      out.push({ ...b, file, quote: m ? m[1]! : null });
    }
  }
  return out;
}

/** The text between `// #region NAME` and `// #endregion NAME`, as it stands in the file. */
function region(file: string, name: string): string {
  const lines = readFileSync(file, 'utf8').split('\n');
  const start = lines.findIndex((l) => l.trim() === `// #region ${name}`);
  const end = lines.findIndex((l, i) => i > start && l.trim() === `// #endregion ${name}`);
  assert.ok(start >= 0 && end > start, `${file}: no region ${name}`);
  return lines.slice(start + 1, end).join('\n');
}

test('docs: the quoted blocks are the example files, verbatim', () => {
  const quotes = tsBlocks().filter((b) => b.quote !== null);
  assert.ok(quotes.length >= 8, `the guide quotes its device (found ${quotes.length} quotes)`);
  for (const b of quotes) {
    const [rel, name] = b.quote!.split('#') as [string, string];
    const target = join(ROOT, 'docs', rel);
    assert.equal(b.text, region(target, name), `${b.file}:${b.line} quotes ${b.quote} but differs from it`);
  }
});

test('docs: every other TypeScript block in the README and docs/ compiles (tsc, strict)', { timeout: 120_000 }, () => {
  const blocks = tsBlocks().filter((b) => b.quote === null);
  assert.ok(blocks.some((b) => b.file === 'README.md'), 'the README has TypeScript blocks');
  assert.ok(blocks.some((b) => b.file === 'docs/writing-a-device.md'), 'the guide has TypeScript blocks of its own');
  const dir = mkdtempSync(join(tmpdir(), 'vfu-doc-blocks-'));
  try {
    for (const f of readdirSync(EXAMPLES)) if (f.endsWith('.ts')) copyFileSync(join(EXAMPLES, f), join(dir, f));
    const names = new Map<string, TsBlock>();
    blocks.forEach((b, i) => {
      const name = `block-${i}-${b.file.replace(/[^a-z0-9]+/gi, '-')}-L${b.line}.ts`;
      names.set(name, b);
      // `export {}` makes every block a module: top-level await, no clashes between blocks.
      writeFileSync(join(dir, name), `${b.text}\nexport {};\n`);
    });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2022'],
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules/@types')],
          paths: { 'vfio-user-ts': [join(ROOT, 'src/index.ts')] },
        },
        include: ['*.ts'],
      }),
    );
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], { encoding: 'utf8' });
    // Name the Markdown file and line rather than the temporary file.
    const report = `${r.stdout}${r.stderr}`.replace(/\S*?(block-\d+-[^(:]*?-L\d+\.ts)\((\d+),(\d+)\)/g, (all) => {
      const m = /(block-\d+-[^(]*?-L\d+\.ts)\((\d+),(\d+)\)/.exec(all)!;
      const b = names.get(m[1]!)!;
      return `${b.file}:${b.line + Number(m[2])}:${m[3]}`;
    });
    assert.equal(r.status, 0, `TypeScript in the docs does not compile:\n${report}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
