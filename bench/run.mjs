#!/usr/bin/env node
// vfio-user-ts benchmarks side by side with a C floor (bench/floor/*.c,
// compiled here with the system cc). Run with `npm run bench`; never part of
// `npm test`.
//
//   node bench/run.mjs [--quick] [--rounds N] [--cpu N] [--modes pinned,unpinned]
//                      [--only rt,posted,irq,dma,mig,startup,nvme] [--no-doc]
//
// Each figure alternates ours and the floor inside one run, several rounds,
// and reports medians with min-max spread. "pinned": every process of the
// figure runs on one CPU (taskset -c CPU); "unpinned": the scheduler places
// them. A full run (every figure, both modes, not --quick) writes
// bench/results.json and the generated part of docs/performance.md; any
// other run writes bench/results.partial.json only, so the committed table
// always comes from a full run. Prints a table either way.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const BIN = join(HERE, 'floor', 'bin');
const NODE = process.execPath;
const TSX = ['--import', 'tsx'];

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
};
const QUICK = flag('--quick');
const ROUNDS = Number(opt('--rounds', QUICK ? 3 : 5));
const CPU = Number(opt('--cpu', os.cpus().length > 1 ? 1 : 0));
const HAVE_TASKSET = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return true;
  } catch {
    return false;
  }
})();
const MODES = opt('--modes', 'pinned,unpinned')
  .split(',')
  .filter((m) => {
    if (m === 'pinned' && !HAVE_TASKSET) console.error('taskset (util-linux) not found: skipping the pinned figures');
    return m !== 'pinned' || HAVE_TASKSET;
  });
/** Every figure group; a run of all of them (in both modes, not --quick) is a full run. */
const ALL_FIGURES = ['rt', 'posted', 'irq', 'dma', 'mig', 'startup', 'nvme'];
const ONLY = new Set(opt('--only', ALL_FIGURES.join(',')).split(','));
const N = QUICK
  ? { rt: 5000, posted: 50000, multi: 200000, irq: 100000, dmaSize: 64 << 20, dmaPasses: 2, dmaMsg: 16 << 20, mig: 64 << 20, flood: 200000 }
  : { rt: 20000, posted: 200000, multi: 1000000, irq: 200000, dmaSize: 256 << 20, dmaPasses: 3, dmaMsg: 64 << 20, mig: 256 << 20, flood: 1000000 };
const CHUNK = 1 << 20;
const IDLE_WAIT_MS = QUICK ? 12000 : 15000;

// ---------------------------------------------------------------- helpers
const tmp = mkdtempSync(join(os.tmpdir(), 'vfu-bench-'));
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});
process.on('SIGINT', () => process.exit(130));

const pinned = (mode) => mode === 'pinned';
const withPin = (pin, cmd, args) => (pin ? ['taskset', ['-c', String(CPU), cmd, ...args]] : [cmd, args]);
let sockN = 0;
const sock = (name) => join(tmp, `${name}-${sockN++}.sock`);

/** The TypeScript sources compiled to JS (tsc, as `npm run build` does) for the compiled start-up figure. */
function compileJs() {
  const out = join(BIN, 'js');
  execFileSync(NODE, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json'), '--outDir', out, '--declaration', 'false', '--sourceMap', 'false'], { stdio: 'inherit', cwd: ROOT });
  return existsSync(join(out, 'samples', 'timer-device.js'));
}

function compileFloor() {
  mkdirSync(BIN, { recursive: true });
  for (const f of ['floor-server', 'floor-client', 'eventfd-writer', 'memcpy']) {
    const src = join(HERE, 'floor', `${f}.c`);
    const out = join(BIN, f);
    if (existsSync(out) && statSync(out).mtimeMs > Math.max(statSync(src).mtimeMs, statSync(join(HERE, 'floor', 'common.h')).mtimeMs)) continue;
    execFileSync(process.env.CC || 'cc', ['-O2', '-Wall', '-Wextra', '-o', out, src], { stdio: 'inherit' });
  }
}

/** Starts a server process; resolves once it printed "listening", with the time that took. */
function startServer(pin, cmd, args, { ipc = false, env } = {}) {
  const [c, a] = withPin(pin, cmd, args);
  const t0 = process.hrtime.bigint();
  const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'inherit', ...(ipc ? ['ipc'] : [])], cwd: ROOT, env: env ?? process.env });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d) => {
      out += d;
      if (out.includes('listening\n')) {
        child.stdout.off('data', onData);
        child.stdout.resume();
        resolve({ child, startMs: Number(process.hrtime.bigint() - t0) / 1e6 });
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited with ${code} before listening`)));
  });
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await done;
  clearTimeout(t);
}

/** Runs a program that prints one JSON line. */
function runJson(pin, cmd, args) {
  const [c, a] = withPin(pin, cmd, args);
  return new Promise((resolve, reject) => {
    const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}
const floorClient = (pin, ...args) => runJson(pin, join(BIN, 'floor-client'), args.map(String));

/** Our client as a long-lived worker (bench/node/client.ts) over IPC. */
async function startNodeClient(pin) {
  const [c, a] = withPin(pin, NODE, [...TSX, join(HERE, 'node', 'client.ts')]);
  const child = spawn(c, a, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], cwd: ROOT });
  children.add(child);
  const waiting = new Map();
  let id = 0;
  await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`node client exited with ${code}`)));
    child.on('message', (m) => {
      if (m.ready) return resolve();
      const w = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.error) w.reject(new Error(m.error));
      else w.resolve(m.result);
    });
  });
  return {
    child,
    call: (msg) =>
      new Promise((resolve, reject) => {
        const mid = ++id;
        waiting.set(mid, { resolve, reject });
        child.send({ ...msg, id: mid });
      }),
  };
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], n: s.length, values: xs };
}

/** Runs each named thunk once per round, rotating the order so neither side always goes first. */
async function alternate(rounds, sides) {
  const names = Object.keys(sides);
  const out = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    const order = names.map((_, i) => names[(i + r) % names.length]);
    for (const n of order) out[n].push(await sides[n]());
  }
  return Object.fromEntries(names.map((n) => [n, stats(out[n])]));
}

function loadAvg() {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

// ---------------------------------------------------------------- figures
const results = {
  date: new Date().toISOString(),
  machine: {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    kernel: os.release(),
    cc: execFileSync(process.env.CC || 'cc', ['--version'], { encoding: 'utf8' }).split('\n')[0],
  },
  options: { quick: QUICK, rounds: ROUNDS, cpu: CPU, modes: MODES, sizes: N },
  loadBefore: loadAvg(),
  figures: [],
};

/**
 * One row. `unit`: what the medians are in. `better`: 'lower' (times: ratio
 * = ours / floor, the slowdown) or 'higher' (rates: ratio = ours / floor,
 * the fraction of the floor reached).
 */
function record(fig) {
  // Targets of issue 11, where one applies: [text, met?]. `target` is a ratio
  // bound (<= for times, >= for rates); `gate` marks the issue's gates.
  const o = fig.ours?.median;
  if (typeof fig.target === 'number') {
    const le = fig.better === 'lower';
    fig.goal = [`${fig.gate ? 'gate: ' : ''}ratio ${le ? '<=' : '>='} ${fig.target}`, fig.ratio !== null && (le ? fig.ratio <= fig.target : fig.ratio >= fig.target)];
  } else if (fig.targetAbs === 'ours >= 1 GB/s') fig.goal = ['>= 1 GB/s', o >= 1];
  else if (fig.targetAbs === 'ours < 16 B') fig.goal = ['< 16 B', o < 16];
  else if (fig.targetAbs === 'bare node + 40 ms') fig.goal = [`<= bare node + 40 ms (${fig.bare.toFixed(0)} + 40)`, o <= fig.bare + 40];
  else if (fig.targetAbs === 'ours within 10% of idle') fig.goal = [`<= 1.10 x idle (${fig.vsIdle.toFixed(2)} x)`, fig.vsIdle <= 1.1];
  results.figures.push(fig);
  const f = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  const side = (s) => (s ? `${f(s.median)} [${f(s.min)}-${f(s.max)}]` : '-');
  console.log(
    `${fig.mode.padEnd(8)} ${fig.name.padEnd(50)} ours ${side(fig.ours).padEnd(24)} floor ${side(fig.floor).padEnd(24)} ${fig.unit.padEnd(10)} ratio ${fig.ratio === null ? '-' : fig.ratio.toFixed(2)}${fig.goal ? `  target ${fig.goal[0]}: ${fig.goal[1] ? 'met' : 'MISSED'}` : ''}`,
  );
}

function ratioOf(ours, floor) {
  return floor && ours && floor.median > 0 ? ours.median / floor.median : null;
}

/**
 * Runs fn() while `perf stat` counts the syscalls and CPU time of process
 * `pid`; null when perf is unavailable. Both are far less sensitive to other
 * load on the machine than wall-clock round trips.
 */
async function perfCount(pid, fn) {
  let perf;
  try {
    perf = spawn('perf', ['stat', '-x', ',', '-e', 'task-clock,raw_syscalls:sys_enter', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch {
    return null;
  }
  let err = '';
  let failed = false;
  perf.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => perf.once('exit', r));
  perf.once('error', () => (failed = true)); // no perf installed
  await new Promise((r) => setTimeout(r, 300));
  if (failed || perf.exitCode !== null) return null; // or not allowed (perf_event_paranoid)
  const result = await fn();
  perf.kill('SIGINT');
  await exited;
  const get = (name) => {
    const line = err.split('\n').find((l) => l.split(',')[2]?.startsWith(name));
    const v = line ? Number(line.split(',')[0]) : NaN;
    return Number.isFinite(v) ? v : null;
  };
  const ms = get('task-clock');
  const sys = get('raw_syscalls:sys_enter');
  return ms === null || sys === null ? null : { cpuMs: ms, syscalls: sys, result };
}

/** Minor page faults of a process so far (/proc/PID/stat field 10). */
function minorFaults(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(f.slice(f.lastIndexOf(')') + 2).split(' ')[7]);
}

/**
 * Bytes the library allocates, and page faults, per 4-byte REGION_READ of
 * the bench device (whose BAR0 uses the allocation-free readInto, so what is
 * counted is the library's): the server's V8 heap and ArrayBuffer counters
 * (asked over IPC) around one C-client connection of OPS requests, minus the
 * same around a connection of 0 requests (connection set-up and teardown),
 * over a window with no GC (a 64 MB young generation leaves room; a window
 * with a GC is retried). In the event-loop mode this includes what Node and
 * N-API allocate for each poll callback into JS (56 B on this machine with
 * Node 20, measured on a bare Poller that does nothing else).
 */
async function allocFigure(pin, child, path) {
  const ops = 100000;
  const ask = () =>
    new Promise((res) => {
      child.once('message', res);
      child.send({ heap: true });
    });
  const window = async (n) => {
    const a = await ask();
    const f0 = minorFaults(child.pid);
    await floorClient(pin, 'read', path, n, 4, 0);
    await new Promise((r) => setTimeout(r, 200)); // the server's disconnect cleanup
    const b = await ask();
    return { gc: b.gcs !== a.gcs, bytes: b.used - a.used + (b.ab - a.ab), faults: minorFaults(child.pid) - f0 };
  };
  await floorClient(pin, 'read', path, 20000, 4, 0); // JIT warm-up
  for (let attempt = 0; attempt < 4; attempt++) {
    const base = await window(0);
    const run = await window(ops);
    if (base.gc || run.gc) continue;
    // The client also makes ops/10 warm-up round trips.
    const per = ops * 1.1;
    return { bytes: Math.max(0, (run.bytes - base.bytes) / per), faults: Math.max(0, (run.faults - base.faults) / per) };
  }
  return null;
}

const usPer = (r) => r.ns / r.ops / 1000;
const perSec = (r) => r.ops / (r.ns / 1e9);

async function messageFigures(mode, ourPath, floorPath, client, pids, dedicatedPath) {
  const pin = pinned(mode);
  if (ONLY.has('rt')) {
    // Per request, 4-byte REGION_READ from the C client: syscalls and CPU of each server.
    const ops = N.rt * 2;
    const per = async (pid, path) => {
      const c = await perfCount(pid, () => floorClient(pin, 'read', path, ops, 4, 0));
      // The client also makes ops/10 warm-up round trips (and a VERSION) inside the window.
      return c && { syscalls: c.syscalls / (ops * 1.1), cpuUs: (c.cpuMs * 1000) / (ops * 1.1) };
    };
    const f = await per(pids.floor, floorPath);
    for (const [label, pid, path] of [['event loop', pids.ours, ourPath], ['dedicated thread', pids.dedicated, dedicatedPath]]) {
      const o = await per(pid, path);
      if (!f || !o) continue;
      const dl = label === 'event loop';
      record({ mode, name: `server syscalls per REGION_READ (C client), ${label}`, unit: 'syscalls', better: 'lower', ours: stats([o.syscalls]), floor: stats([f.syscalls]), ratio: o.syscalls / f.syscalls });
      record({ mode, name: `server CPU per REGION_READ (C client), ${label}`, unit: 'us CPU', better: 'lower', ours: stats([o.cpuUs]), floor: stats([f.cpuUs]), ratio: o.cpuUs / f.cpuUs, ...(dl && pin ? { target: 2.2, gate: true } : {}) });
    }
    for (const [label, child, path] of [['event loop', pids.oursChild, ourPath], ['dedicated thread', pids.dedicatedChild, dedicatedPath]]) {
      const a = await allocFigure(pin, child, path);
      if (!a) continue;
      record({ mode, name: `bytes allocated per REGION_READ, ${label}`, unit: 'B', better: 'lower', ours: stats([a.bytes]), floor: null, ratio: null, targetAbs: 'ours < 16 B' });
      record({ mode, name: `page faults per REGION_READ, ${label}`, unit: 'faults', better: 'lower', ours: stats([a.faults]), floor: null, ratio: null });
    }
  }
  if (ONLY.has('rt')) {
    // One unmeasured pass over every server first: the first figure of a run
    // otherwise absorbs warm-up (the floor's own first round was 15% slower).
    for (const path of [floorPath, ourPath, dedicatedPath]) await floorClient(pin, 'read', path, N.rt, 4, 0);
    for (const kind of ['read', 'write']) {
      for (const count of [4, 8]) {
        const name = `REGION_${kind.toUpperCase()} ${count} B round trip`;
        const s = await alternate(ROUNDS, {
          floor: async () => usPer(await floorClient(pin, kind, floorPath, N.rt, count, 0)),
          oursC: async () => usPer(await floorClient(pin, kind, ourPath, N.rt, count, 0)),
          oursD: async () => usPer(await floorClient(pin, kind, dedicatedPath, N.rt, count, 0)),
          oursClient: async () => usPer(await client.call({ op: 'rt', path: ourPath, kind, ops: N.rt, count })),
        });
        const kops = (st) => ({ ...st, kops: 1000 / st.median });
        const gate = kind === 'read' && count === 4 && pin;
        record({ mode, name: `${name}, C client, event loop`, unit: 'us/rt', better: 'lower', ours: kops(s.oursC), floor: kops(s.floor), ratio: ratioOf(s.oursC, s.floor), target: 1.4, gate });
        record({ mode, name: `${name}, C client, dedicated thread`, unit: 'us/rt', better: 'lower', ours: kops(s.oursD), floor: kops(s.floor), ratio: ratioOf(s.oursD, s.floor), target: 1.15, gate });
        record({ mode, name: `${name}, our client, event loop`, unit: 'us/rt', better: 'lower', ours: kops(s.oursClient), floor: kops(s.floor), ratio: ratioOf(s.oursClient, s.floor) });
      }
    }
  }
  if (ONLY.has('posted')) {
    const p = await alternate(ROUNDS, {
      floor: async () => perSec(await floorClient(pin, 'posted', floorPath, N.posted, 4, 0)) / 1000,
      ours: async () => perSec(await floorClient(pin, 'posted', ourPath, N.posted, 4, 0)) / 1000,
    });
    record({ mode, name: 'posted REGION_WRITE 4 B (NO_REPLY), C client', unit: 'k writes/s', better: 'higher', ours: p.ours, floor: p.floor, ratio: ratioOf(p.ours, p.floor), target: 0.8 });
    const m = await alternate(ROUNDS, {
      floor: async () => perSec(await floorClient(pin, 'multi', floorPath, N.multi, 200, 0)) / 1000,
      ours: async () => perSec(await floorClient(pin, 'multi', ourPath, N.multi, 200, 0)) / 1000,
    });
    record({ mode, name: 'REGION_WRITE_MULTI 200 x 4 B (NO_REPLY)', unit: 'k writes/s', better: 'higher', ours: m.ours, floor: m.floor, ratio: ratioOf(m.ours, m.floor), target: 0.5 });
  }
  if (ONLY.has('irq')) {
    const s = await alternate(ROUNDS, {
      floor: async () => perSec(await runJson(pin, join(BIN, 'eventfd-writer'), [String(N.irq)])) / 1000,
      ours: async () => {
        const r = await client.call({ op: 'irq', path: ourPath, n: N.irq });
        if (!(r.signalled > 0)) throw new Error('no interrupt reached the client eventfd');
        return perSec(r) / 1000;
      },
    });
    record({ mode, name: 'interrupts: device trigger -> client eventfd', unit: 'k irq/s', better: 'higher', ours: s.ours, floor: s.floor, ratio: ratioOf(s.ours, s.floor), target: 0.8 });
  }
  if (ONLY.has('dma')) {
    const rd = [];
    const wr = [];
    const frd = [];
    const fwr = [];
    for (let r = 0; r < ROUNDS; r++) {
      const x = await client.call({ op: 'dmaview', path: ourPath, size: N.dmaSize, chunk: CHUNK, passes: N.dmaPasses });
      rd.push(x.ours.bytes / x.ours.readNs);
      wr.push(x.ours.bytes / x.ours.writeNs);
      frd.push(x.floor.bytes / x.floor.readNs);
      fwr.push(x.floor.bytes / x.floor.writeNs);
    }
    const [a, b, c, d] = [stats(rd), stats(frd), stats(wr), stats(fwr)];
    record({ mode, name: 'DMA read through views (1 MiB copies)', unit: 'GB/s', better: 'higher', ours: a, floor: b, ratio: ratioOf(a, b), target: 0.8 });
    record({ mode, name: 'DMA write through views (1 MiB copies)', unit: 'GB/s', better: 'higher', ours: c, floor: d, ratio: ratioOf(c, d), target: 0.8 });
    const msgs = N.dmaMsg / CHUNK;
    const s = await alternate(ROUNDS, {
      floorRead: async () => {
        const r = await floorClient(pin, 'read', floorPath, msgs, CHUNK, 0);
        return r.bytes / r.ns * 1000;
      },
      floorWrite: async () => {
        const r = await floorClient(pin, 'write', floorPath, msgs, CHUNK, 0);
        return r.bytes / r.ns * 1000;
      },
      ours: async () => {
        const r = await client.call({ op: 'dmamsg', path: ourPath, bytes: N.dmaMsg });
        return { read: (r.bytes / r.readNs) * 1000, write: (r.bytes / r.writeNs) * 1000 };
      },
    });
    const or = stats(s.ours.values.map((v) => v.read));
    const ow = stats(s.ours.values.map((v) => v.write));
    record({ mode, name: 'DMA_READ messages, 1 MiB (floor: C 1 MiB reads)', unit: 'MB/s', better: 'higher', ours: or, floor: s.floorRead, ratio: ratioOf(or, s.floorRead), target: 0.5 });
    record({ mode, name: 'DMA_WRITE messages, 1 MiB (floor: C 1 MiB writes)', unit: 'MB/s', better: 'higher', ours: ow, floor: s.floorWrite, ratio: ratioOf(ow, s.floorWrite), target: 0.5 });
  }
}

async function migrationFigure(mode, client) {
  const pin = pinned(mode);
  const bytes = String(N.mig);
  const srv = [
    await startServer(pin, NODE, [...TSX, join(HERE, 'node', 'server.ts'), sock('mig-src'), 'mig-src', bytes]),
    await startServer(pin, NODE, [...TSX, join(HERE, 'node', 'server.ts'), sock('mig-dst'), 'mig-dst', bytes]),
    await startServer(pin, join(BIN, 'floor-server'), [sock('fmig-src'), bytes]),
    await startServer(pin, join(BIN, 'floor-server'), [sock('fmig-dst'), bytes]),
  ];
  const [os1, od1, fs1, fd1] = srv.map((s) => s.child.spawnargs.find((x) => x.endsWith('.sock')));
  try {
    const s = await alternate(ROUNDS, {
      floor: async () => {
        const r = await floorClient(pin, 'mig', fs1, fd1, bytes, CHUNK);
        return r.bytes / r.ns;
      },
      ours: async () => {
        const r = await client.call({ op: 'mig', src: os1, dst: od1, chunk: CHUNK });
        if (r.bytes !== N.mig) throw new Error(`migrated ${r.bytes} of ${N.mig} bytes`);
        return r.bytes / r.ns;
      },
    });
    record({ mode, name: `migration ${N.mig >> 20} MiB, MIG_DATA_READ -> _WRITE`, unit: 'GB/s', better: 'higher', ours: s.ours, floor: s.floor, ratio: ratioOf(s.ours, s.floor), targetAbs: 'ours >= 1 GB/s' });
  } finally {
    for (const x of srv) await stop(x.child);
  }
}

function rssOf(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
/** The pid that owns the socket: the child itself, or taskset's exec'd child (same pid). */
const pidOf = (child) => child.pid;

async function startupFigures(mode) {
  const pin = pinned(mode);
  let haveJs = false;
  try {
    haveJs = compileJs();
  } catch (e) {
    console.error(`tsc failed (${e.message}): no compiled start-up figure`);
  }
  const variants = {
    floor: () => startServer(pin, join(BIN, 'floor-server'), [sock('fstart')]),
    // Node itself: a script that only prints "listening" (the runtime's share of start-up and RSS).
    nodeBare: () => startServer(pin, NODE, ['-e', 'process.stdout.write("listening\\n"); setInterval(() => {}, 1e6); process.on("SIGTERM", () => process.exit(0))', sock('bare')]),
    oursTsx: () => startServer(pin, NODE, [...TSX, '--expose-gc', join(HERE, 'node', 'timer-server.mjs'), sock('start'), 'src'], { ipc: true }),
    ...(haveJs ? { oursJs: () => startServer(pin, NODE, ['--expose-gc', join(HERE, 'node', 'timer-server.mjs'), sock('start'), 'js'], { ipc: true }) } : {}),
  };
  const startMs = {};
  const idle = {};
  const after = {};
  const afterIdle = {};
  for (const k of Object.keys(variants)) {
    startMs[k] = [];
    idle[k] = [];
    after[k] = [];
    afterIdle[k] = [];
  }
  for (let r = 0; r < ROUNDS; r++) {
    const names = Object.keys(variants);
    for (let i = 0; i < names.length; i++) {
      const k = names[(i + r) % names.length];
      const s = await variants[k]();
      startMs[k].push(s.startMs);
      // Memory once per variant (first round): idle, then after N.flood messages and a forced GC.
      if (r === 0) {
        await new Promise((res) => setTimeout(res, 500));
        idle[k].push(rssOf(pidOf(s.child)));
        const path = s.child.spawnargs.find((x) => x.endsWith('.sock'));
        // Posted 8-byte writes to BAR1 (the timer device's shared memory), then a read to sync.
        if (k !== 'nodeBare') await floorClient(false, 'posted', path, N.flood, 8, 1);
        if (k === 'floor') {
          after[k].push(rssOf(pidOf(s.child)));
          afterIdle[k].push(rssOf(pidOf(s.child)));
        } else if (k !== 'nodeBare') {
          const ask = () =>
            new Promise((res) => {
              s.child.once('message', res);
              s.child.send({ gc: true });
            });
          after[k].push((await ask()).rss / 2 ** 20);
          // V8 shrinks the young generation it grew under load only once the
          // process has been idle for a while (its memory reducer).
          await new Promise((res) => setTimeout(res, IDLE_WAIT_MS));
          afterIdle[k].push((await ask()).rss / 2 ** 20);
        }
      }
      await stop(s.child);
    }
  }
  {
    const sb = stats(startMs.nodeBare);
    const sf = stats(startMs.floor);
    record({ mode, name: 'start-up of bare node (prints "listening")', unit: 'ms', better: 'lower', ours: sb, floor: sf, ratio: ratioOf(sb, sf) });
    const ib = stats(idle.nodeBare);
    const ifl = stats(idle.floor);
    record({ mode, name: 'RSS of bare node', unit: 'MB', better: 'lower', ours: ib, floor: ifl, ratio: ratioOf(ib, ifl) });
  }
  {
    // The command a user types: `vfio-user server` (bin/vfio-user.js, which
    // runs the compiled dist/ when present), until its socket file exists.
    const bin = [];
    for (let r = 0; r < ROUNDS; r++) {
      const path = sock('bin');
      const [c, a] = withPin(pin, NODE, [join(ROOT, 'bin', 'vfio-user.js'), 'server', '--keep', path]);
      const t0 = process.hrtime.bigint();
      const child = spawn(c, a, { stdio: 'ignore', cwd: ROOT });
      children.add(child);
      while (!existsSync(path) && child.exitCode === null) await new Promise((res) => setTimeout(res, 1));
      bin.push(Number(process.hrtime.bigint() - t0) / 1e6);
      await stop(child);
    }
    const sb = stats(bin);
    record({ mode, name: 'start-up to listening, `vfio-user server` (bin/vfio-user.js)', unit: 'ms', better: 'lower', ours: sb, floor: stats(startMs.floor), ratio: ratioOf(sb, stats(startMs.floor)), targetAbs: 'bare node + 40 ms', bare: stats(startMs.nodeBare).median });
  }
  for (const k of Object.keys(variants)) {
    if (k === 'floor' || k === 'nodeBare') continue;
    const label = k === 'oursTsx' ? 'tsx (TypeScript sources)' : 'compiled JS (tsc)';
    const so = stats(startMs[k]);
    const sf = stats(startMs.floor);
    record({ mode, name: `start-up to listening, timer sample, ${label}`, unit: 'ms', better: 'lower', ours: so, floor: sf, ratio: ratioOf(so, sf) });
    const io = stats(idle[k]);
    const ifl = stats(idle.floor);
    record({ mode, name: `idle RSS, timer sample, ${label}`, unit: 'MB', better: 'lower', ours: io, floor: ifl, ratio: ratioOf(io, ifl) });
    const ao = stats(after[k]);
    const af = stats(after.floor);
    record({ mode, name: `RSS after ${N.flood / 1e6}M messages + GC, ${label}`, unit: 'MB', better: 'lower', ours: ao, floor: af, ratio: ratioOf(ao, af), vsIdle: ao.median / io.median, targetAbs: 'ours within 10% of idle' });
    const ai = stats(afterIdle[k]);
    const afi = stats(afterIdle.floor);
    record({ mode, name: `... then ${IDLE_WAIT_MS / 1000} s idle + GC, ${label}`, unit: 'MB', better: 'lower', ours: ai, floor: afi, ratio: ratioOf(ai, afi), vsIdle: ai.median / io.median, targetAbs: 'ours within 10% of idle' });
  }
}

/**
 * Host-side cost per NVMe command of the NVMe sample (bench/nvme-cost.ts:
 * our client plays the host driver, the server runs in a child process).
 * No C floor: reported for comparison between versions.
 */
function nvmeFigures(mode) {
  const out = execFileSync(NODE, [...TSX, join(HERE, 'nvme-cost.ts'), '--commands', QUICK ? '3000' : '20000', '--json'], { cwd: ROOT, encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').pop());
  for (const [phase, v] of Object.entries(r)) {
    record({ mode, name: `NVMe ${phase}: server CPU per command`, unit: 'us CPU', better: 'lower', ours: stats([v.serverCpuUsPerCmd]), floor: null, ratio: null });
    record({ mode, name: `NVMe ${phase}: IOPS (wall ${v.usPerCmd.toFixed(1)} us/command)`, unit: 'IOPS', better: 'higher', ours: stats([v.iops]), floor: null, ratio: null });
  }
}

// ---------------------------------------------------------------- main
compileFloor();
console.log(`vfio-user-ts bench: ${results.machine.cpu} x${results.machine.cpus}, Node ${process.version}, kernel ${os.release()}; ${QUICK ? 'quick' : 'full'}, ${ROUNDS} rounds; pinned = taskset -c ${CPU}; load ${results.loadBefore.join(' ')}`);
console.log('medians [min-max] over rounds; ratio = ours / floor (times: slowdown, lower is better; rates: fraction of the floor, higher is better)\n');
const t0 = Date.now();
for (const mode of MODES) {
  const pin = pinned(mode);
  if (['rt', 'posted', 'irq', 'dma', 'mig'].some((x) => ONLY.has(x))) {
    const ourPath = sock('ours');
    const floorPath = sock('floor');
    const dedicatedPath = sock('dedicated');
    // A fixed 64 MB young generation: the allocation figure's window fits without a scavenge (see allocFigure).
    const young = ['--min-semi-space-size=64', '--max-semi-space-size=64'];
    const ours = await startServer(pin, NODE, [...TSX, ...young, join(HERE, 'node', 'server.ts'), ourPath, 'bench'], { ipc: true });
    const dedicated = await startServer(pin, NODE, [...TSX, ...young, join(HERE, 'node', 'server.ts'), dedicatedPath, 'bench'], { ipc: true, env: { ...process.env, VFU_BENCH_DEDICATED: '1' } });
    const floor = await startServer(pin, join(BIN, 'floor-server'), [floorPath]);
    const client = await startNodeClient(pin);
    try {
      await messageFigures(mode, ourPath, floorPath, client, { ours: ours.child.pid, dedicated: dedicated.child.pid, floor: floor.child.pid, oursChild: ours.child, dedicatedChild: dedicated.child }, dedicatedPath);
      if (ONLY.has('mig')) await migrationFigure(mode, client);
    } finally {
      client.child.kill();
      await stop(ours.child);
      await stop(dedicated.child);
      await stop(floor.child);
    }
  }
  if (ONLY.has('startup') && mode === 'unpinned') await startupFigures(mode);
  if (ONLY.has('nvme') && mode === 'unpinned') nvmeFigures(mode);
}
results.loadAfter = loadAvg();
results.seconds = Math.round((Date.now() - t0) / 1000);
const full = !QUICK && ALL_FIGURES.every((f) => ONLY.has(f)) && MODES.includes('pinned') && MODES.includes('unpinned');
const outFile = join(HERE, full ? 'results.json' : 'results.partial.json');
writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');
console.log(`\n${results.seconds} s; load ${results.loadBefore.join(' ')} -> ${results.loadAfter.join(' ')}; wrote ${outFile}`);
if (full && !flag('--no-doc')) {
  const { updateDoc } = await import('./doc.mjs');
  updateDoc(results, join(ROOT, 'docs', 'performance.md'));
  console.log('updated docs/performance.md');
}
process.exit(0);
