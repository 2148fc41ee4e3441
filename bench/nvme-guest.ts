// The NVMe guest benchmark: the project's QEMU 11.1 TCG guest (test/e2e
// harness) runs the same busybox dd workloads against QEMU's built-in NVMe
// (`-device nvme`, raw file, cache=writeback, aio=threads) and against the
// NVMe sample served by `vfio-user nvme` (a separate process, as next to a
// real VM). By default one guest holds both devices and every round runs each
// workload on one and then the other, back to back, the order alternating by
// round; --boot-per-round boots a guest per device and round instead. The
// backing files sit in one directory (same filesystem), hold the same bytes
// and stay in the page cache. Not part of `npm test`.
//
//   node --import tsx bench/nvme-guest.ts [--rounds 5] [--only ours|qemu]
//        [--scale 1] [--json FILE] [--server-arg ARG]... [--qemu-arg ARG]...
//        [--node-arg ARG]... [--same-session] [--boot-per-round]
//        [--variant NAME=ARGS]... [--workload NAME]...
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
import { findSection, HARMLESS_QEMU_LINES, parseGuestReport, qemuProblems } from '../vm/report.js';

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
 * --variant NAME=ARGS (repeatable): one more server configuration measured in
 * the same alternation, `vfio-user nvme` with the --server-arg ones plus ARGS
 * (split at spaces), reported as its own column: A/B comparisons of server
 * options without run-to-run drift between them. Two ARGS forms are the
 * bench's own: `@cpus=LIST` runs that server under `taskset -c LIST`, and
 * `@env=NAME=VALUE` sets an environment variable for it.
 */
const VARIANTS: [string, string[]][] = opts('--variant').map((v) => {
  const i = v.indexOf('=');
  if (i <= 0) throw new Error(`--variant wants NAME=ARGS, not '${v}'`);
  return [v.slice(0, i), v.slice(i + 1).split(' ').filter(Boolean)];
});
/**
 * --same-session: QEMU runs in this process's session (not a session of its
 * own as bootGuest starts it), so QEMU and the device server share one
 * scheduler autogroup, as a VM and its device helpers share a cgroup under
 * libvirt. Both devices are measured the same way.
 */
const SAME_SESSION = argv.includes('--same-session');
/**
 * --boot-per-round: each round boots a guest of its own per device (the first
 * design). By default one guest holds every device at once (QEMU's nvme and
 * each `vfio-user nvme` configuration, each on its own backing file) and the
 * rounds alternate between them inside it, so boot-to-boot differences (host
 * placement, page cache, neighbours) stop weighing on the ratio.
 */
const BOOT_PER_ROUND = argv.includes('--boot-per-round');
/** Extra node options for the server process (e.g. --cpu-prof for a profile). */
const NODE_ARGS = opts('--node-arg');

/** Workload name -> guest shell command (run under `timed NAME CMD`). Counts scale with --scale. */
const n = (k: number): number => Math.max(1, Math.round(k * SCALE));
const QD = 8;
const ALL_WORKLOADS: [string, string][] = [
  ['w4k', `dd if=/dev/zero of=$D bs=4k count=${n(6144)} oflag=direct`],
  ['r4k', `dd if=$D of=/dev/null bs=4k count=${n(6144)} iflag=direct`],
  // The disk holds 256 MiB: the 1 MiB workloads make several passes to run well over a second.
  ['w1m', `for p in $(seq ${n(6)}); do dd if=/dev/zero of=$D bs=1M count=160 oflag=direct 2>/dev/null || exit 1; done`],
  ['r1m', `for p in $(seq ${n(16)}); do dd if=$D of=/dev/null bs=1M count=192 iflag=direct 2>/dev/null || exit 1; done`],
  // Each of the QD dd processes works on its own 16 MiB stripe.
  ['w4k-qd8', `for i in $(seq 0 ${QD - 1}); do dd if=/dev/zero of=$D bs=4k count=${n(1536)} seek=$((i * 4096)) oflag=direct 2>/dev/null & done; wait`],
  ['r4k-qd8', `for i in $(seq 0 ${QD - 1}); do dd if=$D of=/dev/null bs=4k count=${n(1536)} skip=$((i * 4096)) iflag=direct 2>/dev/null & done; wait`],
];
/** --workload NAME (repeatable): run only these (for profiles); all by default. */
const PICKED = opts('--workload');
const WORKLOADS = PICKED.length ? ALL_WORKLOADS.filter(([w]) => PICKED.includes(w)) : ALL_WORKLOADS;

/**
 * A guest script line: section SECTION runs CMD (after SETUP, in the same
 * shell) between two reads of /proc/uptime and prints "elapsed A B".
 */
const timedSection = (section: string, cmd: string, setup = ''): string =>
  `section ${section} sh -c '${setup}a=$(cut -d" " -f1 /proc/uptime); ${cmd} 2>/dev/null || exit 1; b=$(cut -d" " -f1 /proc/uptime); echo "elapsed $a $b"'`;

/** Guest seconds of a timedSection; throws (with `why`) when it failed or printed no time. */
function sectionSeconds(report: ReturnType<typeof parseGuestReport>, section: string, why: string): number {
  const s = findSection(report, section);
  const m = s?.lines.map((l) => /^elapsed ([\d.]+) ([\d.]+)/.exec(l)).find((x) => x);
  if (!s || s.rc !== 0 || !m) throw new Error(`workload ${section} failed: ${why}`);
  return Number(m[2]) - Number(m[1]);
}

/** Throws unless the guest ran to its end and QEMU printed nothing but the known harmless lines. */
function checkGuest(res: BootResult, report: ReturnType<typeof parseGuestReport>, why: string): void {
  if (res.exitCode !== 0 || !report.done) throw new Error(`guest failed: ${why}`);
  const problems = qemuProblems(res.qemuStderr, HARMLESS_QEMU_LINES);
  if (problems.length) throw new Error(`QEMU complained: ${problems.join(' | ')}`);
}

const guestScript = (): string =>
  [
    'section load loadmod nvme',
    'i=0; while [ ! -e /sys/block/nvme0n1/size ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done',
    'export D=/dev/nvme0n1',
    // Warm-up: first touches of the page cache and the queues.
    'dd if=$D of=/dev/null bs=1M count=8 iflag=direct 2>/dev/null',
    ...WORKLOADS.map(([name, cmd]) => timedSection(name, cmd)),
    "section irqs sh -c 'grep -i nvme /proc/interrupts'",
    // How the guest's block layer cut the work into commands (max transfer, I/Os completed per direction).
    "section queue sh -c 'cat /sys/block/nvme0n1/queue/max_sectors_kb /sys/block/nvme0n1/queue/max_segments /sys/block/nvme0n1/stat'",
  ].join('\n');

/** 'qemu', 'ours' or a --variant's name. */
type Kind = string;

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
  const backing = join(dir, kind === 'qemu' ? 'qemu.img' : 'ours.img');
  let server: ChildProcess | null = null;
  let socket: string | null = null;
  const qemuArgs: string[] = [...QEMU_ARGS];
  if (kind === 'qemu') {
    qemuArgs.push(
      '-drive', `file=${backing},if=none,id=nvm,format=raw,cache=writeback,aio=threads`,
      '-device', 'nvme,drive=nvm,serial=BENCH0001',
    );
  } else {
    ({ server, socket } = await startServer(kind, dir, backing, `-${round}`));
  }
  try {
    const boot: BootOptions = { socket, guestScript: guestScript(), timeoutMs: 600_000, qemuArgs };
    const res = SAME_SESSION ? await bootInSession(boot) : await bootGuest(boot);
    const report = parseGuestReport(res.console);
    const why = `${kind} round ${round}: exit ${res.exitCode}\n${res.console.slice(-3000)}\n${res.qemuStderr}`;
    checkGuest(res, report, why);
    const seconds: Record<string, number> = {};
    for (const [name] of WORKLOADS) seconds[name] = sectionSeconds(report, name, why);
    if (process.env.BENCH_SHOW_IRQS) console.error(findSection(report, 'irqs')?.output, findSection(report, 'queue')?.output);
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

/** Starts `vfio-user nvme` for one of our kinds on its own backing file. */
async function startServer(kind: Kind, dir: string, backing: string, tag = ''): Promise<{ server: ChildProcess; socket: string }> {
  const socket = join(dir, `nvme-${kind}${tag}.sock`);
  const vargs = VARIANTS.find(([v]) => v === kind)?.[1] ?? [];
  const cpus = vargs.find((x) => x.startsWith('@cpus='));
  const env = Object.fromEntries(vargs.filter((x) => x.startsWith('@env=')).map((x) => [x.slice(5, x.indexOf('=', 5)), x.slice(x.indexOf('=', 5) + 1)]));
  const cmd = [process.execPath, ...NODE_ARGS, '--import', 'tsx', join(ROOT, 'cli', 'run.ts'), 'nvme', '--backing', backing, '--size', String(SIZE), ...SERVER_ARGS, ...vargs.filter((x) => !x.startsWith('@')), '--serial', `BENCH-${kind}`.slice(0, 20), socket];
  if (cpus) cmd.unshift('taskset', '-c', cpus.slice(6));
  const server = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env } });
  await waitForSocket(socket, server);
  return { server, socket };
}

/**
 * Every round in one guest: QEMU's nvme at slot 0x10, our kinds as
 * vfio-user-pci devices at slots 1, 2, ... (run-guest.sh's order). The guest
 * maps each controller's PCI address to its kind, then runs round after round:
 * each workload on every device back to back, the device order alternating.
 */
async function runShared(kinds: Kind[], dir: string): Promise<Round[]> {
  const ours = kinds.filter((k) => k !== 'qemu');
  const servers: ChildProcess[] = [];
  const sockets: string[] = [];
  try {
    for (const k of ours) {
      const backing = join(dir, `${k}.img`);
      fillBacking(backing);
      const { server, socket } = await startServer(k, dir, backing);
      servers.push(server);
      sockets.push(socket);
    }
    const qemuArgs: string[] = [...QEMU_ARGS];
    if (kinds.includes('qemu')) {
      fillBacking(join(dir, 'qemu.img'));
      qemuArgs.push(
        '-drive', `file=${join(dir, 'qemu.img')},if=none,id=nvm,format=raw,cache=writeback,aio=threads`,
        '-device', 'nvme,drive=nvm,serial=BENCH0001,addr=0x10',
      );
    }
    const slotOf = (k: Kind): string => (k === 'qemu' ? '10' : (ours.indexOf(k) + 1).toString(16).padStart(2, '0'));
    /** The guest shell variable holding a kind's block device. */
    const devVar = (k: Kind): string => `DEV_${k.replace(/\W/g, '_')}`;
    const lines = [
      'section load loadmod nvme',
      `i=0; while [ $(ls /sys/block | grep -c nvme) -lt ${kinds.length} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done`,
      // Kind -> block device, by the controller's PCI slot.
      ...kinds.map((k) => `for c in /sys/class/nvme/nvme*; do case $(cat $c/address) in *:${slotOf(k)}.0) export ${devVar(k)}=/dev/$(basename $c)n1;; esac; done`),
      ...kinds.map((k) => `echo "device ${k} $${devVar(k)}"`),
      ...kinds.map((k) => `dd if=$${devVar(k)} of=/dev/null bs=1M count=8 iflag=direct 2>/dev/null`),
    ];
    for (let r = 0; r < ROUNDS; r++) {
      // Each workload on every device back to back (a few seconds apart), in an order that alternates by round.
      const order = r % 2 === 0 ? kinds : [...kinds].reverse();
      for (const [name, cmd] of WORKLOADS) {
        for (const k of order) {
          lines.push(timedSection(`${k}.${name}.${r}`, cmd, `D=$${devVar(k)}; `));
        }
      }
    }
    lines.push("section irqs sh -c 'grep -i nvme /proc/interrupts'");
    const boot: BootOptions = { sockets, guestScript: lines.join('\n'), timeoutMs: 3_600_000, qemuArgs };
    const res = SAME_SESSION ? await bootInSession(boot) : await bootGuest(boot);
    const report = parseGuestReport(res.console);
    const why = `exit ${res.exitCode}\n${res.console.slice(-3000)}\n${res.qemuStderr}`;
    if (process.env.BENCH_CONSOLE) writeFileSync(process.env.BENCH_CONSOLE, res.console);
    checkGuest(res, report, why);
    if (process.env.BENCH_SHOW_IRQS) console.error(findSection(report, 'irqs')?.output);
    const rounds: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? kinds : [...kinds].reverse();
      for (const k of order) {
        const seconds: Record<string, number> = {};
        for (const [name] of WORKLOADS) seconds[name] = sectionSeconds(report, `${k}.${name}.${r}`, why);
        rounds.push({ kind: k, round: r, seconds, bootMs: res.wallMs, load: loadavg()[0]! });
        console.error(`round ${r} ${k.padEnd(4)} ` + WORKLOADS.map(([w]) => `${w} ${seconds[w]!.toFixed(2)}s`).join('  '));
      }
    }
    return rounds;
  } finally {
    for (const server of servers) {
      if (server.exitCode === null) {
        server.kill('SIGTERM');
        await new Promise((r) => server.once('exit', r));
      }
    }
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** A kind's seconds against QEMU's, round by round: the ratio of the medians and the range of the per-round ratios. */
function againstQemu(xs: number[], q: number[]): { ratio: number; ratioRange: [number, number] } {
  const ratios = xs.map((x, i) => x / q[i]!);
  return { ratio: median(xs) / median(q), ratioRange: [Math.min(...ratios), Math.max(...ratios)] };
}

async function main(): Promise<void> {
  await ensureHarness();
  const dir = mkdtempSync(join(tmpdir(), 'vfu-nvme-guest-'));
  const oursKinds: Kind[] = ['ours', ...VARIANTS.map(([v]) => v)];
  const kinds: Kind[] = ONLY === 'ours' ? oursKinds : ONLY === 'qemu' ? ['qemu'] : ['qemu', ...oursKinds];
  try {
    const loadBefore = loadavg();
    const rounds: Round[] = BOOT_PER_ROUND ? [] : await runShared(kinds, dir);
    if (BOOT_PER_ROUND) for (const k of new Set(kinds.map((k) => (k === 'qemu' ? 'qemu' : 'ours')))) fillBacking(join(dir, `${k}.img`));
    for (let r = 0; BOOT_PER_ROUND && r < ROUNDS; r++) {
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
      if (q.length && o.length) Object.assign(e, againstQemu(o, q));
      summary[w] = e;
    }
    // Each --variant against QEMU's nvme, like `ours` above.
    const variants: Record<string, Record<string, { s: number; ratio?: number; ratioRange?: [number, number] }>> = {};
    for (const [v] of VARIANTS) {
      variants[v] = {};
      for (const [w] of WORKLOADS) {
        const xs = rounds.filter((x) => x.kind === v).map((x) => x.seconds[w]!);
        const q = rounds.filter((x) => x.kind === 'qemu').map((x) => x.seconds[w]!);
        variants[v][w] = q.length ? { s: median(xs), ...againstQemu(xs, q) } : { s: median(xs) };
      }
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
      ...(VARIANTS.length ? { variants: Object.fromEntries(VARIANTS.map(([v, args]) => [v, { args: args.join(' '), summary: variants[v] }])) } : {}),
      rounds,
    };
    if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(out, null, 2) + '\n');
    console.log(`NVMe guest benchmark, median of ${ROUNDS} alternating rounds (guest seconds; ratio = ours / QEMU's nvme)`);
    for (const [w, e] of Object.entries(summary)) {
      const f = (v?: number): string => (v === undefined ? '   -  ' : v.toFixed(2).padStart(6));
      const rr = e.ratioRange ? ` (${e.ratioRange[0].toFixed(2)}-${e.ratioRange[1].toFixed(2)})` : '';
      console.log(`  ${w.padEnd(8)} qemu ${f(e.qemuS)} s  ours ${f(e.oursS)} s  ratio ${e.ratio === undefined ? '-' : e.ratio.toFixed(2)}${rr}`);
    }
    for (const [v, per] of Object.entries(variants)) {
      console.log(`  variant ${v}: ` + Object.entries(per).map(([w, e]) => `${w} ${e.s.toFixed(2)} s${e.ratio === undefined ? '' : ` (${e.ratio.toFixed(2)})`}`).join('  '));
    }
    console.log(`  load average before ${loadBefore.map((x) => x.toFixed(2)).join(' ')}, after ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
