// The NVMe guest benchmark: the project's QEMU 11.1 TCG guest (test/e2e
// harness) runs the same busybox dd workloads against QEMU's built-in NVMe
// (`-device nvme`, raw file, cache=writeback, aio=threads) and against the
// NVMe sample served by `vfio-user nvme` (a separate process, as next to a
// real VM), alternating device order round by round. Both backing files sit
// in one directory (same filesystem), hold the same bytes and stay in the
// page cache. Not part of `npm test`.
//
//   node --import tsx bench/nvme-guest.ts [--rounds 5] [--only ours|qemu]
//        [--scale 1] [--json FILE] [--server-arg ARG]... [--qemu-arg ARG]...
//        [--node-arg ARG]... [--same-session]
//
// Workloads (guest time from /proc/uptime around each one, 10 ms resolution,
// so each is sized to run for well over a second):
//   w4k / r4k        4 KiB O_DIRECT writes / reads, queue depth 1
//   w1m / r1m        1 MiB O_DIRECT writes / reads, queue depth 1
//   w4k-qd8/r4k-qd8  8 dd processes at disjoint offsets in parallel (QD 8)
// Prints a table and, with --json, writes every round and the medians.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { bootGuest, ensureHarness, RUN_GUEST_SCRIPT, runGuestArgs, type BootOptions, type BootResult } from '../vm/harness.js';
import { findSection, parseGuestReport, qemuProblems } from '../vm/report.js';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const SIZE = 256 << 20;
const argv = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : def;
};
const opts = (name: string): string[] => argv.flatMap((a, i) => (a === name && i + 1 < argv.length ? [argv[i + 1]!] : []));
const ROUNDS = Number(opt('--rounds', '5'));
const SCALE = Number(opt('--scale', '1'));
const ONLY = opt('--only', '');
const JSON_OUT = opt('--json', '');
const SERVER_ARGS = opts('--server-arg');
const QEMU_ARGS = opts('--qemu-arg');
/**
 * --same-session: QEMU runs in this process's session (not a session of its
 * own as bootGuest starts it), so QEMU and the device server share one
 * scheduler autogroup, as a VM and its device helpers share a cgroup under
 * libvirt. Both devices are measured the same way.
 */
const SAME_SESSION = argv.includes('--same-session');
/** Extra node options for the server process (e.g. --cpu-prof for a profile). */
const NODE_ARGS = opts('--node-arg');

/** Workload name -> guest shell command (run under `timed NAME CMD`). Counts scale with --scale. */
const n = (k: number): number => Math.max(1, Math.round(k * SCALE));
const QD = 8;
const WORKLOADS: [string, string][] = [
  ['w4k', `dd if=/dev/zero of=$D bs=4k count=${n(6144)} oflag=direct`],
  ['r4k', `dd if=$D of=/dev/null bs=4k count=${n(6144)} iflag=direct`],
  // The disk holds 256 MiB: the 1 MiB workloads make several passes to run well over a second.
  ['w1m', `for p in $(seq ${n(6)}); do dd if=/dev/zero of=$D bs=1M count=160 oflag=direct 2>/dev/null || exit 1; done`],
  ['r1m', `for p in $(seq ${n(16)}); do dd if=$D of=/dev/null bs=1M count=192 iflag=direct 2>/dev/null || exit 1; done`],
  // Each of the QD dd processes works on its own 16 MiB stripe.
  ['w4k-qd8', `for i in $(seq 0 ${QD - 1}); do dd if=/dev/zero of=$D bs=4k count=${n(1536)} seek=$((i * 4096)) oflag=direct 2>/dev/null & done; wait`],
  ['r4k-qd8', `for i in $(seq 0 ${QD - 1}); do dd if=$D of=/dev/null bs=4k count=${n(1536)} skip=$((i * 4096)) iflag=direct 2>/dev/null & done; wait`],
];

const guestScript = (): string =>
  [
    'section load loadmod nvme',
    'i=0; while [ ! -e /sys/block/nvme0n1/size ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done',
    'export D=/dev/nvme0n1',
    // Warm-up: first touches of the page cache and the queues.
    'dd if=$D of=/dev/null bs=1M count=8 iflag=direct 2>/dev/null',
    ...WORKLOADS.map(([name, cmd]) => `section ${name} sh -c 'a=$(cut -d" " -f1 /proc/uptime); ${cmd} 2>/dev/null || exit 1; b=$(cut -d" " -f1 /proc/uptime); echo "elapsed $a $b"'`),
    "section irqs sh -c 'grep -i nvme /proc/interrupts'",
  ].join('\n');

type Kind = 'qemu' | 'ours';

interface Round {
  kind: Kind;
  round: number;
  /** Seconds of guest time per workload. */
  seconds: Record<string, number>;
  bootMs: number;
  load: number;
}

function fillBacking(path: string): void {
  // Same non-zero bytes in both files, written out (not sparse).
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let off = 0; off < SIZE; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, off);
  closeSync(fd);
}

async function waitForSocket(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (existsSync(path)) return;
    if (child.exitCode !== null) throw new Error(`vfio-user nvme exited with ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('vfio-user nvme did not listen within 10 s');
}

async function runOnce(kind: Kind, round: number, dir: string): Promise<Round> {
  const load = loadavg()[0]!;
  const backing = join(dir, `${kind}.img`);
  let server: ChildProcess | null = null;
  let socket: string | null = null;
  const qemuArgs: string[] = [...QEMU_ARGS];
  if (kind === 'qemu') {
    qemuArgs.push(
      '-drive', `file=${backing},if=none,id=nvm,format=raw,cache=writeback,aio=threads`,
      '-device', 'nvme,drive=nvm,serial=BENCH0001',
    );
  } else {
    socket = join(dir, `nvme-${round}.sock`);
    server = spawn(process.execPath, [...NODE_ARGS, '--import', 'tsx', join(ROOT, 'cli', 'run.ts'), 'nvme', '--backing', backing, '--size', String(SIZE), ...SERVER_ARGS, socket], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    await waitForSocket(socket, server);
  }
  try {
    const boot: BootOptions = { socket, guestScript: guestScript(), timeoutMs: 600_000, qemuArgs };
    const res = SAME_SESSION ? await bootInSession(boot) : await bootGuest(boot);
    const report = parseGuestReport(res.console);
    const why = `${kind} round ${round}: exit ${res.exitCode}\n${res.console.slice(-3000)}\n${res.qemuStderr}`;
    if (res.exitCode !== 0 || !report.done) throw new Error(`guest failed: ${why}`);
    const problems = qemuProblems(res.qemuStderr, [/Device ROM size is zero/]);
    if (problems.length) throw new Error(`QEMU complained: ${problems.join(' | ')}`);
    const seconds: Record<string, number> = {};
    for (const [name] of WORKLOADS) {
      const s = findSection(report, name);
      const m = s?.lines.map((l) => /^elapsed ([\d.]+) ([\d.]+)/.exec(l)).find((x) => x);
      if (!s || s.rc !== 0 || !m) throw new Error(`workload ${name} failed: ${why}`);
      seconds[name] = Number(m[2]) - Number(m[1]);
    }
    if (process.env.BENCH_SHOW_IRQS) console.error(findSection(report, 'irqs')?.output);
    return { kind, round, seconds, bootMs: res.wallMs, load };
  } finally {
    if (server && server.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((r) => server!.once('exit', r));
    }
  }
}

/** bootGuest without a new session: run-guest.sh (and QEMU) stay in ours. */
async function bootInSession(opts: BootOptions): Promise<BootResult> {
  const work = await mkdtemp(join(tmpdir(), 'nvme-guest-boot-'));
  try {
    const script = join(work, 'run.sh');
    await writeFile(script, opts.guestScript ?? '');
    const stderrFile = join(work, 'qemu.stderr');
    const started = Date.now();
    const out: Buffer[] = [];
    const log: Buffer[] = [];
    const exitCode = await new Promise<number>((resolve, reject) => {
      const child = spawn('bash', [RUN_GUEST_SCRIPT, ...runGuestArgs(opts, script, stderrFile)], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (c: Buffer) => out.push(c));
      child.stderr!.on('data', (c: Buffer) => log.push(c));
      child.on('error', reject);
      child.on('close', (c) => resolve(c ?? 1));
    });
    let qemuStderr = '';
    try {
      qemuStderr = await readFile(stderrFile, 'utf8');
    } catch {
      // QEMU never started
    }
    return { console: Buffer.concat(out).toString('utf8').replace(/\r/g, ''), qemuStderr, exitCode, wallMs: Date.now() - started, runnerLog: Buffer.concat(log).toString('utf8') };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  await ensureHarness();
  const dir = mkdtempSync(join(tmpdir(), 'vfu-nvme-guest-'));
  const kinds: Kind[] = ONLY === 'ours' ? ['ours'] : ONLY === 'qemu' ? ['qemu'] : ['qemu', 'ours'];
  try {
    for (const k of kinds) fillBacking(join(dir, `${k}.img`));
    const loadBefore = loadavg();
    const rounds: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which device goes first so drift in the machine's load hits both alike.
      const order = r % 2 === 0 ? kinds : [...kinds].reverse();
      for (const k of order) {
        const res = await runOnce(k, r, dir);
        rounds.push(res);
        console.error(`round ${r} ${k.padEnd(4)} load ${res.load.toFixed(2)} ` + WORKLOADS.map(([w]) => `${w} ${res.seconds[w]!.toFixed(2)}s`).join('  '));
      }
    }
    const summary: Record<string, { qemuS?: number; oursS?: number; ratio?: number; qemuRange?: [number, number]; oursRange?: [number, number]; ratioRange?: [number, number] }> = {};
    for (const [w] of WORKLOADS) {
      const of = (k: Kind): number[] => rounds.filter((x) => x.kind === k).map((x) => x.seconds[w]!);
      const q = of('qemu');
      const o = of('ours');
      const e: (typeof summary)[string] = {};
      if (q.length) Object.assign(e, { qemuS: median(q), qemuRange: [Math.min(...q), Math.max(...q)] });
      if (o.length) Object.assign(e, { oursS: median(o), oursRange: [Math.min(...o), Math.max(...o)] });
      if (q.length && o.length) {
        const ratios = o.map((x, i) => x / q[i]!);
        Object.assign(e, { ratio: median(o) / median(q), ratioRange: [Math.min(...ratios), Math.max(...ratios)] });
      }
      summary[w] = e;
    }
    const out = {
      date: new Date().toISOString(),
      bench: 'nvme-guest',
      setup: {
        guest: 'QEMU 11.1 TCG, 1 vCPU, q35, 512 MiB memfd RAM, Linux nvme driver, busybox dd',
        disk: `${SIZE >> 20} MiB, backing files in ${tmpdir()} (same filesystem), prefilled`,
        qemu: '-device nvme -drive format=raw,cache=writeback,aio=threads',
        ours: `vfio-user nvme ${SERVER_ARGS.join(' ')}`.trim(),
        session: SAME_SESSION ? 'QEMU and the server in the benchmark\'s session (one autogroup)' : 'QEMU in a session of its own (bootGuest), the server in the benchmark\'s',
        rounds: ROUNDS,
        scale: SCALE,
        workloads: Object.fromEntries(WORKLOADS),
      },
      loadBefore,
      loadAfter: loadavg(),
      summary,
      rounds,
    };
    if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(out, null, 2) + '\n');
    console.log(`NVMe guest benchmark, median of ${ROUNDS} alternating rounds (guest seconds; ratio = ours / QEMU's nvme)`);
    for (const [w, e] of Object.entries(summary)) {
      const f = (v?: number): string => (v === undefined ? '   -  ' : v.toFixed(2).padStart(6));
      const rr = e.ratioRange ? ` (${e.ratioRange[0].toFixed(2)}-${e.ratioRange[1].toFixed(2)})` : '';
      console.log(`  ${w.padEnd(8)} qemu ${f(e.qemuS)} s  ours ${f(e.oursS)} s  ratio ${e.ratio === undefined ? '-' : e.ratio.toFixed(2)}${rr}`);
    }
    console.log(`  load average before ${loadBefore.map((x) => x.toFixed(2)).join(' ')}, after ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
