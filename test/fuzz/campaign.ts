// Socket fuzzer: a seeded campaign of hostile clients against a real server
// process (test/fuzz/server-proc.ts) running the timer and GPIO samples.
// Sessions mix valid and mutated commands, random fds of every kind, raw
// garbage, truncated messages, abrupt closes, huge declared sizes, clients
// that never read, and migration commands in any order. Every so often, and
// at the end, a clean client checks that the server still serves correctly;
// at the end its fd count must be back to the baseline and its RSS bounded.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, unlinkSync, writeSync, constants as fsc } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import { Rng, concat, frame, genMessage, genMigrationBurst, header, newGenState, versionPayload, type FdSpec, type GenState } from './gen.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const PAGE = 4096;

export interface CampaignOptions {
  seed: number;
  /** Messages to send in total (whole or partial ones both count). */
  messages: number;
  /** Stop early after this long (the result says so). */
  timeLimitMs: number;
  /** Run a clean-client check every this many sessions. */
  checkEvery?: number;
  /** Progress lines to stderr every this many messages (0: none). */
  progressEvery?: number;
  /** Extra environment for the server process (e.g. LD_PRELOAD for ASan). */
  serverEnv?: NodeJS.ProcessEnv;
  /** Largest RSS peak over the baseline accepted. Default 384 MiB. */
  maxRssGrowthBytes?: number;
  /** Largest RSS growth over the baseline after a GC at the end. Default 192 MiB. */
  maxRssEndGrowthBytes?: number;
  /** Largest growth of live memory (heap used + external, after GC). Default 48 MiB. */
  maxLiveGrowthBytes?: number;
  log?: (line: string) => void;
}

export interface ServerMemory {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export interface CampaignResult {
  seed: number;
  messages: number;
  sessions: number;
  /** Sessions that ended before any reply was read (abrupt closes, dropped connections). */
  noReply: number;
  /** Sessions ended by shutdown(SHUT_WR) and reading until the server closed. */
  orderlyCloses: number;
  sessionKinds: Record<string, number>;
  fdsAttached: number;
  bytesSent: number;
  repliesBytes: number;
  checks: number;
  elapsedMs: number;
  timedOut: boolean;
  crashed: boolean;
  failures: string[];
  server: {
    pid: number;
    fdBaseline: number;
    fdEnd: number;
    rssBaselineKiB: number;
    rssEndKiB: number;
    rssPeakKiB: number;
    /** JS heap in use plus external memory, after a full GC, at the start and at the end (bytes). */
    liveBaseline: number;
    liveEnd: number;
  };
  serverStderrTail: string;
}

function procStatus(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k: string): number => Number(/(\d+)\s*kB/.exec(s.split('\n').find((l) => l.startsWith(k)) ?? '')?.[1] ?? NaN);
  return { rss: get('VmRSS:'), hwm: get('VmHWM:') };
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** fds the fuzzer attaches; all created on demand and closed after sending. */
class FdFactory {
  private readonly fifo: string;
  private readonly fullFifo: string;
  private fullKeeper = -1;
  constructor(private readonly dir: string) {
    this.fifo = join(dir, 'fifo');
    this.fullFifo = join(dir, 'fifo-full');
    execFileSync('mkfifo', [this.fifo, this.fullFifo]);
    // Keep the full pipe open (and full) for the whole campaign.
    this.fullKeeper = openSync(this.fullFifo, fsc.O_RDWR | fsc.O_NONBLOCK);
    const chunk = Buffer.alloc(65536, 0x55);
    const fd = this.fullKeeper;
    for (;;) {
      try {
        if (writeSync(fd, chunk) <= 0) break;
      } catch {
        break;
      }
    }
  }
  make(spec: FdSpec): number {
    switch (spec.kind) {
      case 'eventfd':
        return native.eventfd(0, native.EFD_NONBLOCK);
      case 'eventfd-blocking': {
        const fd = native.eventfd(0, 0);
        // Counter at its maximum: a write of 1 would block on a blocking fd.
        native.setNonBlocking(fd, true);
        native.eventfdWrite(fd, 0xfffffffffffffffen);
        native.setNonBlocking(fd, false);
        return fd;
      }
      case 'memfd':
      case 'memfd-short':
      case 'memfd-sealed': {
        const size = Math.max(PAGE, Math.ceil((spec.size ?? PAGE) / PAGE) * PAGE);
        const fd = native.memfdCreate('fuzz', spec.kind === 'memfd-sealed');
        native.ftruncate(fd, spec.kind === 'memfd-short' ? size - PAGE : size);
        if (spec.kind === 'memfd-sealed') native.addSeals(fd, native.F_SEAL_SHRINK | native.F_SEAL_GROW | native.F_SEAL_SEAL);
        return fd;
      }
      case 'tmpfile': {
        const p = join(this.dir, `tmp-${Math.random().toString(36).slice(2)}`);
        const fd = openSync(p, fsc.O_RDWR | fsc.O_CREAT);
        ftruncateSync(fd, Math.max(PAGE, Math.ceil((spec.size ?? PAGE) / PAGE) * PAGE));
        unlinkSync(p);
        return fd;
      }
      case 'pipe-r':
      case 'pipe-w':
        return openSync(this.fifo, fsc.O_RDWR | fsc.O_NONBLOCK);
      case 'pipe-full':
        // A new, blocking file description of the full pipe.
        return openSync(this.fullFifo, fsc.O_RDWR);
      case 'socket': {
        const [a, b] = native.socketpair();
        native.close(b);
        return a;
      }
      case 'devnull':
        return openSync('/dev/null', 'r+');
      case 'dir':
        return openSync(this.dir, 'r');
    }
  }
  close(): void {
    if (this.fullKeeper >= 0) closeSync(this.fullKeeper);
    this.fullKeeper = -1;
  }
}

/** The fuzz server process (test/fuzz/server-proc.ts) and what it reports. */
export class ServerProc {
  child: ChildProcess;
  pid = 0;
  timer = '';
  gpio = '';
  exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  stderr = '';
  constructor(dir: string, env: NodeJS.ProcessEnv) {
    this.child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(root, 'test/fuzz/server-proc.ts'), dir], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20000);
    });
    this.child.on('exit', (code, signal) => {
      this.exited = { code, signal };
    });
  }
  /** Connection events the server reported, per device. */
  readonly events: Record<'timer' | 'gpio', { connect: number; disconnect: number; refused: number }> = {
    timer: { connect: 0, disconnect: 0, refused: 0 },
    gpio: { connect: 0, disconnect: 0, refused: 0 },
  };
  /** Process warnings the server reported ("name: message"). */
  readonly warnings: string[] = [];
  /** The last memory report (after a GC), see gcAndMeasure. */
  memory: ServerMemory | null = null;
  /** Asks the server to collect garbage and report its memory. */
  async gcAndMeasure(): Promise<ServerMemory> {
    this.memory = null;
    this.child.kill('SIGUSR2');
    const end = Date.now() + 10000;
    while (!this.memory && Date.now() < end && !this.exited) await sleep(10);
    if (!this.memory) throw new Error('server did not report its memory');
    return this.memory;
  }
  /** Connections we opened, per device. */
  readonly opened = { timer: 0, gpio: 0 };
  async ready(): Promise<void> {
    const rl = createInterface({ input: this.child.stdout! });
    const line = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`server did not start: ${this.stderr}`)), 30000);
      rl.once('line', (l) => {
        clearTimeout(t);
        resolve(l);
      });
      this.child.once('exit', () => reject(new Error(`server exited at start: ${this.stderr}`)));
    });
    rl.on('line', (l) => {
      if (l.startsWith('M ')) {
        this.memory = JSON.parse(l.slice(2)) as ServerMemory;
        return;
      }
      if (l.startsWith('W ')) {
        const w = JSON.parse(l.slice(2)) as { name: string; message: string };
        this.warnings.push(`${w.name}: ${w.message}`);
        return;
      }
      const m = /^E (timer|gpio) (connect|disconnect|refused)$/.exec(l);
      if (m) this.events[m[1] as 'timer' | 'gpio'][m[2] as 'connect']++;
    });
    const info = JSON.parse(line) as { pid: number; timer: string; gpio: string };
    this.pid = info.pid;
    this.timer = info.timer;
    this.gpio = info.gpio;
  }
  /**
   * Waits until the server has dealt with every connection we opened to
   * `device`: accepted and cleaned up, or refused. A server that does not get
   * there within `ms` is hung (or leaks a client): that is a failure.
   */
  async settled(device: 'timer' | 'gpio', ms: number): Promise<void> {
    const e = this.events[device];
    const end = Date.now() + ms;
    while (!(e.connect + e.refused >= this.opened[device] && e.disconnect === e.connect)) {
      if (this.exited) return;
      if (Date.now() > end) throw new Error(`server did not finish with its ${device} clients in ${ms} ms (${JSON.stringify(e)}, opened ${this.opened[device]})`);
      await sleep(e.connect + e.refused < this.opened[device] ? 0 : 1);
    }
  }
  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.kill('SIGTERM');
    const end = Date.now() + 5000;
    while (!this.exited && Date.now() < end) await sleep(20);
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

/** Raw client connection: non-blocking sends with fds, replies read and thrown away. */
class RawConn {
  readonly fd: number;
  eof = false;
  dead = false;
  replyBytes = 0;
  private readonly buf = new Uint8Array(65536);
  private readonly fdsOut = new Int32Array(2 + 32);
  constructor(path: string) {
    this.fd = native.connect(path);
  }
  drain(): void {
    if (this.dead || this.eof) return;
    for (let i = 0; i < 256; i++) {
      let n: number;
      try {
        n = native.recvmsg(this.fd, this.buf, 0, this.buf.length, this.fdsOut);
      } catch {
        this.dead = true;
        return;
      }
      for (let j = 0; j < this.fdsOut[0]!; j++) native.close(this.fdsOut[2 + j]!);
      if (n === 0) {
        this.eof = true;
        return;
      }
      if (n < 0) return;
      this.replyBytes += n;
    }
  }
  /**
   * Sends bytes (fds with the first byte). Returns false when the server
   * closed the connection. Throws when the server makes no progress for
   * stallMs while we keep reading (a hang).
   */
  async send(bytes: Uint8Array, fds: number[], opts: { read: boolean; stallMs: number }): Promise<boolean> {
    let off = 0;
    let last = Date.now();
    while (off < bytes.length) {
      if (this.dead) return false;
      let n: number;
      try {
        n = native.sendmsg(this.fd, bytes, off, bytes.length - off, off === 0 && fds.length > 0 ? fds : null);
      } catch {
        this.dead = true;
        return false;
      }
      if (n > 0) {
        off += n;
        last = Date.now();
        continue;
      }
      // EAGAIN: the server is not reading right now.
      if (opts.read) this.drain();
      else return false;
      if (this.eof) return false;
      if (Date.now() - last > opts.stallMs) throw new Error(`server stopped reading for ${opts.stallMs} ms`);
      await sleep(1);
    }
    return true;
  }
  close(): void {
    if (this.dead && this.fd < 0) return;
    try {
      native.close(this.fd);
    } catch {
      // already
    }
    this.dead = true;
  }
}

type SessionKind = 'normal' | 'nohandshake' | 'migration' | 'noread' | 'garbage' | 'huge' | 'midclose' | 'fdflood' | 'halfclose' | 'concurrent';

/** A client that does everything right, checking every reply. */
async function cleanCheck(server: ServerProc, device: 'timer' | 'gpio', deadline: number): Promise<void> {
  let lastErr: unknown = null;
  const path = device === 'timer' ? server.timer : server.gpio;
  while (Date.now() < deadline) {
    let ep: Endpoint | null = null;
    try {
      await server.settled(device, 10000);
      server.opened[device]++;
      ep = new Endpoint(new SocketTransport(native.connect(path)), { requestTimeoutMs: 5000 });
      const ver = await ep.request(Command.VERSION, versionPayload(null));
      if (ver.payload.length < 5) throw new Error('short VERSION reply');
      await runCleanSequence(ep, device);
      await ep.close();
      await server.settled(device, 10000);
      return;
    } catch (e) {
      lastErr = e;
      if (ep) await ep.close().catch(() => {});
      // Refused while the previous client was being cleaned up: try again.
      await sleep(50);
    }
  }
  throw new Error(`clean client failed on ${device}: ${(lastErr as Error)?.message ?? lastErr}`);
}

function u32s(...v: number[]): Uint8Array {
  const out = new Uint8Array(v.length * 4);
  const dv = new DataView(out.buffer);
  v.forEach((x, i) => dv.setUint32(i * 4, x >>> 0, true));
  return out;
}
function u64s(...v: bigint[]): Uint8Array {
  const out = new Uint8Array(v.length * 8);
  const dv = new DataView(out.buffer);
  v.forEach((x, i) => dv.setBigUint64(i * 8, x, true));
  return out;
}
const eq = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

async function runCleanSequence(ep: Endpoint, device: 'timer' | 'gpio'): Promise<void> {
  const call = async (cmd: number, payload?: Uint8Array, fds?: number[]) => {
    const m = await ep.request(cmd, payload, fds ? { fds } : {});
    return m;
  };
  const must = (c: boolean, what: string): void => {
    if (!c) throw new Error(`clean client: ${what}`);
  };
  // A device reset brings migration back to RUNNING, whatever a fuzzer left.
  await call(Command.DEVICE_RESET);
  const info = await call(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0));
  must(info.payload.length === 16 && new DataView(info.payload.buffer, info.payload.byteOffset).getUint32(8, true) === 9, 'GET_INFO');
  const cfg = await call(Command.REGION_READ, concat(u64s(0n), u32s(7, 4)));
  const ids = new DataView(cfg.payload.buffer, cfg.payload.byteOffset + 16).getUint32(0, true);
  must(ids === (device === 'timer' ? 0xbeefdead : 0x0dc8494f), `config IDs 0x${ids.toString(16)}`);
  if (device === 'timer') {
    const ri = await call(Command.DEVICE_GET_REGION_INFO, u32s(80, 0, 1, 0, 0, 0, 0, 0));
    must(ri.payload.length === 80 && ri.fds.length === 1, 'BAR1 region info with its fd');
    for (const fd of ri.fds) native.close(fd);
    const pattern = Uint8Array.from({ length: 64 }, (_, i) => (i * 7 + 3) & 0xff);
    await call(Command.REGION_WRITE, concat(u64s(0x100n), u32s(1, 64), pattern));
    const back = await call(Command.REGION_READ, concat(u64s(0x100n), u32s(1, 64)));
    must(eq(back.payload.subarray(16), pattern), 'BAR1 read-back');
    const mem = native.memfdCreate('clean', true);
    native.ftruncate(mem, 2 * PAGE);
    try {
      await call(Command.DMA_MAP, concat(u32s(32, 3), u64s(0n, 0x10000n, 2n * BigInt(PAGE))), [mem]);
    } finally {
      native.close(mem);
    }
    const un = concat(u32s(24, 0), u64s(0x10000n, 2n * BigInt(PAGE)));
    must(eq((await call(Command.DMA_UNMAP, un)).payload, un), 'DMA_UNMAP echo');
    const st = await call(Command.DEVICE_FEATURE, u32s(16, 2 | (1 << 16)));
    must(new DataView(st.payload.buffer, st.payload.byteOffset).getUint32(8, true) === 2, 'migration state RUNNING after reset');
  } else {
    await call(Command.REGION_WRITE, concat(u64s(0n), u32s(2, 1), Uint8Array.of(0x5a)));
    const inp = await call(Command.REGION_READ, concat(u64s(1n), u32s(2, 1)));
    must(inp.payload[16] === 0x5a, 'GPIO loopback');
    await call(Command.REGION_WRITE, concat(u64s(0n), u32s(2, 1), Uint8Array.of(0)));
  }
  const efd = native.eventfd(0, native.EFD_NONBLOCK);
  try {
    await call(Command.DEVICE_SET_IRQS, u32s(20, 0x24, 0, 0, 1), [efd]);
  } finally {
    native.close(efd);
  }
  await call(Command.DEVICE_SET_IRQS, u32s(20, 0x21, 0, 0, 0));
}

export async function runCampaign(o: CampaignOptions): Promise<CampaignResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const r = new Rng(o.seed);
  const dir = mkdtempSync(join(tmpdir(), 'vfu-fuzz-'));
  const fds = new FdFactory(dir);
  const server = new ServerProc(dir, o.serverEnv ?? {});
  const res: CampaignResult = {
    seed: o.seed,
    messages: 0,
    sessions: 0,
    noReply: 0,
    orderlyCloses: 0,
    sessionKinds: {},
    fdsAttached: 0,
    bytesSent: 0,
    repliesBytes: 0,
    checks: 0,
    elapsedMs: 0,
    timedOut: false,
    crashed: false,
    failures: [],
    server: { pid: 0, fdBaseline: 0, fdEnd: 0, rssBaselineKiB: 0, rssEndKiB: 0, rssPeakKiB: 0, liveBaseline: 0, liveEnd: 0 },
    serverStderrTail: '',
  };
  const start = Date.now();
  const checkEvery = o.checkEvery ?? 200;
  // FUZZ_KINDS=normal,noread restricts the session kinds (to narrow a finding down).
  const onlyKinds = process.env.FUZZ_KINDS ? process.env.FUZZ_KINDS.split(',') : null;
  let nextProgress = o.progressEvery ?? 0;
  try {
    await server.ready();
    res.server.pid = server.pid;
    // Baseline after one clean session per device (lazy state initialised).
    for (const d of ['timer', 'gpio'] as const) await cleanCheck(server, d, Date.now() + 10000);
    await waitStable(server.pid);
    res.server.fdBaseline = fdCount(server.pid);
    const m0 = await server.gcAndMeasure();
    res.server.liveBaseline = m0.heapUsed + m0.external;
    res.server.rssBaselineKiB = procStatus(server.pid).rss;
    log(`fuzz: seed ${o.seed}, server pid ${server.pid}, baseline ${res.server.fdBaseline} fds, RSS ${res.server.rssBaselineKiB} KiB`);
    const st: Record<'timer' | 'gpio', GenState> = { timer: newGenState(), gpio: newGenState() };
    while (res.messages < o.messages) {
      if (Date.now() - start > o.timeLimitMs) {
        res.timedOut = true;
        break;
      }
      if (server.exited) break;
      const device = r.chance(0.7) ? 'timer' : 'gpio';
      let kind = r.pick<SessionKind>(['normal', 'normal', 'normal', 'normal', 'normal', 'nohandshake', 'migration', 'migration', 'noread', 'garbage', 'huge', 'midclose', 'midclose', 'fdflood', 'halfclose', 'concurrent']);
      if (onlyKinds && !onlyKinds.includes(kind)) kind = onlyKinds[res.sessions % onlyKinds.length] as SessionKind;
      res.sessionKinds[kind] = (res.sessionKinds[kind] ?? 0) + 1;
      try {
        await server.settled(device, 10000);
        await session(server, device, kind, r, st[device], fds, res, o.messages);
      } catch (e) {
        res.failures.push(`session ${res.sessions} (${kind} on ${device}): ${(e as Error).message}`);
        break;
      }
      res.sessions++;
      if (process.env.FUZZ_DEBUG_FDS) {
        // Slow: find the first session after which the server keeps fds.
        await sleep(30);
        const n = await waitFds(server.pid, res.server.fdBaseline, 3000);
        if (n !== res.server.fdBaseline) {
          res.failures.push(`fds ${n} after session ${res.sessions - 1} (${kind} on ${device}): ${fdDiff(server.pid)}\n  trace: ${trace.join(' ')}`);
          break;
        }
      }
      if (res.sessions % checkEvery === 0) {
        await sleep(5);
        for (const d of ['timer', 'gpio'] as const) {
          try {
            await cleanCheck(server, d, Date.now() + 15000);
            res.checks++;
          } catch (e) {
            res.failures.push(`after session ${res.sessions}: ${(e as Error).message}`);
          }
        }
        if (res.failures.length > 0) break;
        res.server.rssPeakKiB = Math.max(res.server.rssPeakKiB, procStatus(server.pid).rss);
      }
      if (nextProgress > 0 && res.messages >= nextProgress) {
        const s = procStatus(server.pid);
        log(`fuzz: ${res.messages} messages, ${res.sessions} sessions, ${((Date.now() - start) / 1000).toFixed(0)} s, server ${fdCount(server.pid)} fds, RSS ${s.rss} KiB (peak ${s.hwm})`);
        nextProgress += o.progressEvery!;
      }
    }
    if (server.exited) {
      res.crashed = true;
      res.failures.push(`server exited: code ${server.exited.code}, signal ${server.exited.signal}`);
    } else {
      for (const d of ['timer', 'gpio'] as const) {
        try {
          await cleanCheck(server, d, Date.now() + 15000);
          res.checks++;
        } catch (e) {
          res.failures.push(`final check: ${(e as Error).message}`);
        }
      }
      // fds are released once the last client's cleanup has run.
      const fdEnd = await waitFds(server.pid, res.server.fdBaseline, 10000);
      res.server.fdEnd = fdEnd;
      if (fdEnd !== res.server.fdBaseline) res.failures.push(`server fd count ${fdEnd}, baseline ${res.server.fdBaseline}: ${fdDiff(server.pid)}`);
      // What stays: after a full garbage collection in the server.
      const m1 = await server.gcAndMeasure();
      res.server.liveEnd = m1.heapUsed + m1.external;
      const s = procStatus(server.pid);
      res.server.rssEndKiB = s.rss;
      res.server.rssPeakKiB = Math.max(res.server.rssPeakKiB, s.hwm);
      const limit = o.maxRssGrowthBytes ?? 384 * 1048576;
      if ((s.hwm - res.server.rssBaselineKiB) * 1024 > limit) res.failures.push(`server RSS peaked at ${s.hwm} KiB (baseline ${res.server.rssBaselineKiB} KiB)`);
      // RSS after GC keeps what malloc and V8 hold on to (not a leak): a loose bound.
      if ((s.rss - res.server.rssBaselineKiB) * 1024 > (o.maxRssEndGrowthBytes ?? 192 * 1048576)) res.failures.push(`server RSS ${s.rss} KiB after GC (baseline ${res.server.rssBaselineKiB} KiB)`);
      // Live memory (JS heap + buffers) after GC: a leak shows here.
      if (res.server.liveEnd - res.server.liveBaseline > (o.maxLiveGrowthBytes ?? 48 * 1048576)) {
        res.failures.push(`server live memory ${(res.server.liveEnd / 1048576).toFixed(1)} MiB after GC (baseline ${(res.server.liveBaseline / 1048576).toFixed(1)} MiB): leak`);
      }
      if (server.exited) {
        res.crashed = true;
        res.failures.push(`server exited: ${JSON.stringify(server.exited)}`);
      }
    }
    // A warning is a defect too (a timer Node clamps, listeners piling up).
    const warned = new Map<string, number>();
    for (const w of server.warnings) warned.set(w, (warned.get(w) ?? 0) + 1);
    for (const [w, n] of warned) res.failures.push(`server warned ${n} time(s): ${w}`);
  } catch (e) {
    res.failures.push(`campaign: ${(e as Error).stack ?? e}`);
  } finally {
    await server.stop();
    if (server.exited && server.exited.code !== 0 && !res.crashed) {
      res.crashed = true;
      res.failures.push(`server exit at shutdown: ${JSON.stringify(server.exited)}`);
    }
    fds.close();
    rmSync(dir, { recursive: true, force: true });
    res.elapsedMs = Date.now() - start;
    res.serverStderrTail = server.stderr.slice(-4000);
  }
  return res;
}

async function waitStable(pid: number): Promise<void> {
  let prev = -1;
  for (let i = 0; i < 50; i++) {
    const n = fdCount(pid);
    if (n === prev) return;
    prev = n;
    await sleep(50);
  }
}

async function waitFds(pid: number, want: number, ms: number): Promise<number> {
  const end = Date.now() + ms;
  let n = fdCount(pid);
  while (n !== want && Date.now() < end) {
    await sleep(50);
    n = fdCount(pid);
  }
  return n;
}

function fdDiff(pid: number): string {
  const out: string[] = [];
  for (const f of readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(`${f}->${readlinkSync(`/proc/${pid}/fd/${f}`)}`);
    } catch {
      // gone
    }
  }
  return out.join(' ');
}

/** Labels of the current session's messages (FUZZ_DEBUG_FDS). */
const trace: string[] = [];

async function session(server: ServerProc, device: 'timer' | 'gpio', kind: SessionKind, r: Rng, st: GenState, fdf: FdFactory, res: CampaignResult, budget: number): Promise<void> {
  const path = device === 'timer' ? server.timer : server.gpio;
  let c: RawConn;
  try {
    server.opened[device]++;
    c = new RawConn(path);
  } catch (e) {
    throw new Error(`connect: ${(e as Error).message}`);
  }
  const read = kind !== 'noread';
  const stallMs = 15000;
  let gotReply = false;
  trace.length = 0;
  const send = async (bytes: Uint8Array, specs: FdSpec[] = [], label = ''): Promise<boolean> => {
    const made: number[] = [];
    if (process.env.FUZZ_DEBUG_FDS) trace.push(`${label || 'cmd' + (bytes.length >= 4 ? bytes[2]! | (bytes[3]! << 8) : '?')}[${specs.map((s) => s.kind).join(',')}]${Buffer.from(bytes.subarray(16, 40)).toString('hex')}`);
    try {
      for (const s of specs) made.push(fdf.make(s));
      res.fdsAttached += made.length;
      const ok = await c.send(bytes, made, { read, stallMs });
      res.messages++;
      if (ok) res.bytesSent += bytes.length;
      return ok;
    } finally {
      for (const fd of made) native.close(fd);
      if (read) {
        c.drain();
        if (c.replyBytes > 0) gotReply = true;
      }
    }
  };
  /**
   * Stop sending and read until the server closes: it must handle everything
   * sent so far (an abrupt close lets it drop what it has not read yet).
   */
  const orderlyClose = async (): Promise<void> => {
    if (c.dead || c.eof) return;
    try {
      native.shutdown(c.fd, 1);
    } catch {
      return;
    }
    res.orderlyCloses++;
    const end = Date.now() + 15000;
    while (!c.eof && !c.dead) {
      c.drain();
      if (Date.now() > end) throw new Error('server did not close 15 s after the client finished sending');
      await sleep(1);
    }
    if (c.replyBytes > 0) gotReply = true;
  };
  const handshake = async (): Promise<boolean> => send(frame(Command.VERSION, versionPayload(r), r.int(0x10000)));
  try {
    const n = Math.min(r.chance(0.8) ? r.range(1, 60) : r.range(60, 400), Math.max(1, budget - res.messages));
    switch (kind) {
      case 'normal':
      case 'fdflood':
      case 'halfclose': {
        if (!(await handshake())) break;
        for (let i = 0; i < n; i++) {
          const m = genMessage(r, st);
          if (kind === 'fdflood' && m.fds.length === 0) m.fds.push(...Array.from({ length: r.range(1, 20) }, () => ({ kind: r.pick(['eventfd', 'memfd', 'pipe-r'] as const), size: PAGE })));
          if (!(await send(m.bytes, m.fds, m.label))) break;
          if (!m.inSync) break; // the stream is out of step now: end the session
        }
        if (kind === 'halfclose' || r.chance(0.7)) await orderlyClose();
        break;
      }
      case 'concurrent': {
        // A second client while the first is attached: its VERSION is answered
        // with a header-only EBUSY error reply, then it is closed; the first is unharmed.
        if (!(await send(frame(Command.VERSION, versionPayload(null), 1)))) break;
        const end = Date.now() + 5000;
        while (c.replyBytes === 0 && !c.eof && Date.now() < end) {
          c.drain();
          await sleep(1);
        }
        if (c.replyBytes === 0) break;
        const refusedBefore = server.events[device].refused;
        server.opened[device]++;
        const second = new RawConn(path);
        await second.send(frame(Command.VERSION, versionPayload(null), 1), [], { read: true, stallMs: 5000 });
        const t = Date.now() + 5000;
        while (!second.eof && !second.dead && Date.now() < t) {
          second.drain();
          await sleep(1);
        }
        const gotData = second.replyBytes;
        second.close();
        if (!second.eof && !second.dead) throw new Error('second concurrent client was not refused');
        if (gotData !== 16) throw new Error(`second concurrent client received ${gotData} bytes, not one error reply`);
        while (server.events[device].refused === refusedBefore && Date.now() < t) await sleep(1);
        if (server.events[device].refused === refusedBefore) throw new Error(`refusal of the second client not reported (${JSON.stringify(server.events[device])}, eof ${second.eof}, dead ${second.dead}, first eof ${c.eof})`);
        const before = c.replyBytes;
        if (!(await send(frame(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0), 7)))) throw new Error('first client lost after a refused second one');
        const t2 = Date.now() + 5000;
        while (c.replyBytes === before && Date.now() < t2) {
          c.drain();
          await sleep(1);
        }
        if (c.replyBytes === before) throw new Error('first client got no reply after a refused second one');
        break;
      }
      case 'nohandshake': {
        const m = genMessage(r, st);
        await send(m.bytes, m.fds);
        if (r.chance(0.5)) await handshake();
        break;
      }
      case 'migration': {
        if (!(await handshake())) break;
        for (const b of genMigrationBurst(r, n)) if (!(await send(b))) break;
        if (r.chance(0.7)) await orderlyClose();
        break;
      }
      case 'noread': {
        if (!(await handshake())) break;
        // Large reads the client never collects.
        for (let i = 0; i < n * 4; i++) {
          const big = r.chance(0.5)
            ? frame(Command.REGION_READ, concat(u64s(0n), u32s(1, 0x4000)), i)
            : frame(Command.MIG_DATA_READ, u32s(8 + 0x4000, 0x4000), i);
          if (!(await send(big))) break;
        }
        break;
      }
      case 'garbage': {
        if (r.chance(0.5)) await handshake();
        for (let i = 0; i < r.range(1, 8); i++) if (!(await send(r.bytes(r.range(1, 4096)), r.chance(0.2) ? [{ kind: 'eventfd' }] : []))) break;
        break;
      }
      case 'huge': {
        if (r.chance(0.7)) await handshake();
        const size = r.pick([0xffffffff, 0x80000000, 64 * 1048576 + 16, 64 * 1048576, 2 * 1048576, 1048576 + 4096 + 1]);
        const cmd = r.pick([Command.REGION_WRITE, Command.MIG_DATA_WRITE, Command.DMA_MAP, Command.VERSION, 0xffff]);
        const body = r.bytes(r.pick([0, 16, 4096, 65536]));
        await send(concat(header(r.int(0x10000), cmd, size), body), r.chance(0.3) ? [{ kind: 'memfd', size: PAGE }] : []);
        if (size <= 2 * 1048576 && r.chance(0.5)) {
          // Send the whole drained body, then a valid command: the stream must still be in step.
          let left = size - 16 - body.length;
          const chunk = new Uint8Array(65536);
          while (left > 0) {
            const k = Math.min(left, chunk.length);
            if (!(await c.send(chunk.subarray(0, k), [], { read: true, stallMs }))) break;
            left -= k;
          }
          await send(frame(Command.DEVICE_GET_INFO, u32s(16, 0, 0, 0), 0x4242));
        }
        break;
      }
      case 'midclose': {
        if (r.chance(0.8)) await handshake();
        for (let i = 0; i < r.int(n); i++) {
          const m = genMessage(r, st);
          if (!(await send(m.bytes, m.fds)) || !m.inSync) break;
        }
        // Part of a message, fds included, then gone.
        const m = r.chance(0.3) ? { bytes: concat(...genMigrationBurst(r, 1)), fds: [] as FdSpec[] } : genMessage(r, st);
        const cut = r.range(1, Math.max(1, m.bytes.length - 1));
        await send(m.bytes.subarray(0, cut), m.fds);
        break;
      }
    }
  } finally {
    if (!gotReply) res.noReply++;
    res.repliesBytes += c.replyBytes;
    // Abrupt close: whatever the server still wanted to send is lost.
    c.close();
  }
}
