#!/usr/bin/env node
// Socket fuzzer against a real server process running the sample devices.
//   node scripts/fuzz.mjs --messages N --seed S [--time SECONDS] [--json FILE]
// (npm run fuzz -- --messages N --seed S). A hard watchdog kills the run
// (and reports failure) if it overstays its time limit by a minute.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const ti = args.indexOf('--time');
const limitS = ti >= 0 ? Number(args[ti + 1]) : 600;
const child = spawn(process.execPath, ['--import', 'tsx', 'test/fuzz/run.ts', ...args], { cwd: root, stdio: 'inherit', env: process.env });
const watchdog = setTimeout(() => {
  process.stderr.write(`fuzz: watchdog: still running ${limitS + 60} s after start; killing\n`);
  child.kill('SIGKILL');
}, (limitS + 60) * 1000);
child.on('exit', (code, signal) => {
  clearTimeout(watchdog);
  process.exit(code ?? (signal ? 1 : 0));
});
