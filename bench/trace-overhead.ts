// What `vfio-user trace` adds to a round trip: sequential 4-byte config
// reads (the smallest command with a reply) against the timer sample,
// straight and through the proxy, alternated round by round. Two proxy
// modes: text to a file (what a person runs) and --filter that prints
// nothing (the cost of decoding and forwarding alone). Not part of npm test.
//
//   node --import tsx bench/trace-overhead.ts [--ops N] [--rounds N] [--pin CPU]
//
// Prints a table and one JSON line ({"figure":"trace-overhead",...}) with the
// median ns per round trip of each path and the added microseconds.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VfioUserClient } from '../src/client/index.js';

const argv = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const OPS = opt('--ops', 20000);
const ROUNDS = opt('--rounds', 5);
const PIN = argv.includes('--pin') ? opt('--pin', 1) : -1;
const entry = fileURLToPath(new URL('../cli/run.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'vfu-bench-trace-'));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function start(args: string[]): void {
  const cmd = PIN >= 0 ? 'taskset' : process.execPath;
  const full = PIN >= 0 ? ['-c', String(PIN), process.execPath, '--import', 'tsx', entry, ...args] : ['--import', 'tsx', entry, ...args];
  children.push(spawn(cmd, full, { stdio: ['ignore', 'ignore', 'inherit'] }));
}

async function waitFor(path: string): Promise<void> {
  for (let i = 0; i < 1500 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 20));
  if (!existsSync(path)) throw new Error(`${path} never appeared`);
}

/**
 * Connects, retrying while the server still tears down the previous round's
 * client (it refuses a second client with EBUSY until then).
 */
async function connectWhenFree(path: string): Promise<VfioUserClient> {
  for (let i = 0; ; i++) {
    try {
      return await VfioUserClient.connect(path);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_VFIO_USER_REFUSED' || i >= 100) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** ns per round trip over OPS sequential reads (after a warm-up). */
async function measure(path: string): Promise<number> {
  const c = await connectWhenFree(path);
  try {
    for (let i = 0; i < Math.min(2000, OPS / 10); i++) await c.regionRead(7, 0, 4);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < OPS; i++) await c.regionRead(7, 0, 4);
    return Number(process.hrtime.bigint() - t0) / OPS;
  } finally {
    await c.close();
  }
}

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

const server = join(dir, 'dev.sock');
const text = join(dir, 'text.sock');
const quiet = join(dir, 'quiet.sock');
start(['server', '--keep', server]);
await waitFor(server);
start(['trace', '--listen', text, '--connect', server, '--out', join(dir, 'trace.txt')]);
start(['trace', '--listen', quiet, '--connect', server, '--filter', 'DMA_READ']);
await waitFor(text);
await waitFor(quiet);
const got: Record<'direct' | 'text' | 'quiet', number[]> = { direct: [], text: [], quiet: [] };
for (let r = 0; r < ROUNDS; r++) {
  got.direct.push(await measure(server));
  got.text.push(await measure(text));
  got.quiet.push(await measure(quiet));
}
const m = { direct: median(got.direct), text: median(got.text), quiet: median(got.quiet) };
const us = (ns: number): string => (ns / 1000).toFixed(1);
console.log(`trace overhead: ${OPS} x 4-byte REGION_READ, ${ROUNDS} rounds, median ns per round trip${PIN >= 0 ? `, pinned to CPU ${PIN}` : ''}`);
console.log(`  direct                 ${us(m.direct)} us`);
console.log(`  through trace (text)   ${us(m.text)} us   (+${us(m.text - m.direct)} us)`);
console.log(`  through trace (quiet)  ${us(m.quiet)} us   (+${us(m.quiet - m.direct)} us)`);
console.log(JSON.stringify({ figure: 'trace-overhead', ops: OPS, rounds: ROUNDS, pinned: PIN >= 0, nsPerRoundTrip: m, addedNs: { text: m.text - m.direct, quiet: m.quiet - m.direct }, samples: got }));
process.exit(0);
