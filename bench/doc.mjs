// Writes the generated part of docs/performance.md from bench/results.json:
// everything between the BEGIN/END markers is replaced; the prose around it
// is kept (a missing file is created with the markers only).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BEGIN = '<!-- BEGIN bench/run.mjs output: do not edit by hand -->';
const END = '<!-- END bench/run.mjs output -->';

const f = (x) => (x === undefined || x === null || Number.isNaN(x) ? '-' : x >= 1000 ? x.toFixed(0) : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const cell = (s, unit) => {
  if (!s) return '-';
  const base = s.n > 1 ? `${f(s.median)} (${f(s.min)}-${f(s.max)})` : f(s.median);
  return unit === 'us/rt' ? `${base} = ${f(1000 / s.median)}k/s` : base;
};

export function renderTable(results) {
  const m = results.machine;
  const lines = [];
  lines.push(BEGIN);
  lines.push('');
  lines.push(
    `Run of ${results.date.slice(0, 16).replace('T', ' ')} UTC (${results.options.quick ? 'quick' : 'full'}, ${results.options.rounds} rounds, ${results.seconds} s): ` +
      `${m.cpu}, ${m.cpus} CPUs, ${m.memGiB} GiB; Node ${m.node}; kernel ${m.kernel}; ${m.cc}. ` +
      `Load average before/after: ${results.loadBefore.join(' ')} / ${results.loadAfter.join(' ')}. ` +
      `"pinned": every process of the figure on CPU ${results.options.cpu} (taskset); "unpinned": placed by the scheduler.`,
  );
  lines.push('');
  lines.push(
    'Medians over rounds (min-max in parentheses); ours and the floor alternate within each round. Ratio = ours / floor: for times (us, ms, MB) the slowdown, for rates the fraction of the floor reached. Round trips also as thousands per second.',
  );
  lines.push('');
  lines.push('| mode | figure | ours | floor | unit | ratio | target |');
  lines.push('|---|---|---|---|---|---|---|');
  for (const x of results.figures) {
    const goal = x.goal ? `${x.goal[0]}: ${x.goal[1] ? 'met' : '**missed**'}` : '';
    lines.push(`| ${x.mode} | ${x.name} | ${cell(x.ours, x.unit)} | ${cell(x.floor, x.unit)} | ${x.unit} | ${x.ratio === null ? '-' : x.ratio.toFixed(2)} | ${goal} |`);
  }
  lines.push('');
  lines.push(END);
  return lines.join('\n');
}

export function updateDoc(results, path) {
  mkdirSync(dirname(path), { recursive: true });
  const table = renderTable(results);
  let text = existsSync(path) ? readFileSync(path, 'utf8') : `# Performance\n\n${BEGIN}\n${END}\n`;
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) text = `${text.trimEnd()}\n\n${table}\n`;
  else text = text.slice(0, a) + table + text.slice(b + END.length);
  writeFileSync(path, text);
}

// node bench/doc.mjs: regenerate from the last results.json.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const here = dirname(fileURLToPath(import.meta.url));
  updateDoc(JSON.parse(readFileSync(join(here, 'results.json'), 'utf8')), join(here, '..', 'docs', 'performance.md'));
}
