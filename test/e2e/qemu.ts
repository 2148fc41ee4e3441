// End-to-end harness: a real QEMU (>= 10.1, vfio-user-pci client) booting a
// tiny Linux guest under TCG. The shell scripts in ./harness do the work:
//   setup.sh       prepares (once) a trixie root with QEMU and the guest, in a
//                  cache outside the clone (VFIO_USER_E2E_CACHE, default
//                  /var/cache/vfio-user-ts/e2e)
//   run-guest.sh   boots the guest against a vfio-user socket, prints the console
//   guest-init.sh  the guest's /init, prints the report parsed below
// See harness/NOTES.md for what a device test needs to do in the guest.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HARNESS_DIR = fileURLToPath(new URL('./harness/', import.meta.url));
export const SETUP_SCRIPT = join(HARNESS_DIR, 'setup.sh');
export const RUN_GUEST_SCRIPT = join(HARNESS_DIR, 'run-guest.sh');
export const DEFAULT_CACHE = '/var/cache/vfio-user-ts/e2e';

export interface HarnessPaths {
  /** Cache directory holding everything below. */
  cache: string;
  /** The trixie root QEMU runs from (through its own ld.so). */
  root: string;
  kernel: string;
  initramfs: string;
  kernelVersion: string;
  qemuVersion: string;
  /** Kernel modules in the guest's /modules, in a valid load order. */
  guestModules: string[];
  setupScript: string;
  runGuestScript: string;
}

export function cacheDir(): string {
  return process.env.VFIO_USER_E2E_CACHE || DEFAULT_CACHE;
}

let harnessPromise: Promise<HarnessPaths> | undefined;

/**
 * Prepares the harness (runs setup.sh; fast when the cache is complete) and
 * returns its paths. setup.sh's output is streamed to our stderr. Throws with
 * the tail of that output when setup fails: the end-to-end tests never skip.
 */
export function ensureHarness(): Promise<HarnessPaths> {
  harnessPromise ??= runSetup();
  return harnessPromise;
}

async function runSetup(): Promise<HarnessPaths> {
  const tail: string[] = [];
  const keep = (chunk: Buffer): void => {
    process.stderr.write(chunk);
    tail.push(...chunk.toString('utf8').split('\n'));
    if (tail.length > 60) tail.splice(0, tail.length - 60);
  };
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn('bash', [SETUP_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
  }).catch((err: unknown) => {
    throw new Error(`e2e harness: cannot start ${SETUP_SCRIPT}: ${String(err)}`);
  });
  if (code !== 0) {
    throw new Error(
      `e2e harness: ${SETUP_SCRIPT} failed with exit status ${code} ` +
        `(it needs root and network access to the Debian mirror the first time). Last output:\n` +
        tail.join('\n'),
    );
  }
  const infoFile = join(cacheDir(), 'harness.json');
  let info: Omit<HarnessPaths, 'setupScript' | 'runGuestScript'>;
  try {
    info = JSON.parse(await readFile(infoFile, 'utf8')) as typeof info;
  } catch (err) {
    throw new Error(`e2e harness: setup.sh succeeded but ${infoFile} is unreadable: ${String(err)}`);
  }
  return { ...info, setupScript: SETUP_SCRIPT, runGuestScript: RUN_GUEST_SCRIPT };
}

export interface BootOptions {
  /** UNIX socket of a vfio-user server that is already listening; null = no device. */
  socket: string | null;
  /** Shell script (busybox sh) the guest runs as /run.sh; `section NAME CMD...` and
   *  `loadmod MODULE...` are available in it. */
  guestScript: string;
  /** Hard limit for the whole boot (default 180 s); QEMU is killed after it. */
  timeoutMs?: number;
  /** Extra QEMU arguments, appended as they are. */
  qemuArgs?: string[];
  /** Extra JSON members for the vfio-user-pci device, e.g. ',"x-msg-timeout":10000'. */
  deviceOpts?: string;
  /** Extra kernel command line. */
  kernelAppend?: string;
  /** Directory whose files are added to the guest's root next to /run.sh. */
  guestOverlayDir?: string;
}

export interface BootResult {
  /** Serial console, CRs removed. */
  console: string;
  /** Everything QEMU wrote to stderr; a healthy run has none. */
  qemuStderr: string;
  /** QEMU's exit status (0 = the guest powered off); 124 = timeout. */
  exitCode: number;
  wallMs: number;
  /** run-guest.sh's own messages (status line, timeout notice). */
  runnerLog: string;
}

/** Boots the guest once; resolves when QEMU has exited (or was killed at the timeout). */
export async function bootGuest(opts: BootOptions): Promise<BootResult> {
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const work = await mkdtemp(join(tmpdir(), 'e2e-boot-'));
  try {
    const scriptFile = join(work, 'run.sh');
    const stderrFile = join(work, 'qemu.stderr');
    await writeFile(scriptFile, opts.guestScript.endsWith('\n') ? opts.guestScript : `${opts.guestScript}\n`);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      E2E_QEMU_STDERR: stderrFile,
      E2E_TIMEOUT: String(Math.max(1, Math.ceil(timeoutMs / 1000))),
    };
    if (opts.deviceOpts !== undefined) env.E2E_VFU_OPTS = opts.deviceOpts;
    if (opts.kernelAppend !== undefined) env.E2E_APPEND = opts.kernelAppend;
    if (opts.guestOverlayDir !== undefined) env.E2E_GUEST_OVERLAY = opts.guestOverlayDir;
    const args = [RUN_GUEST_SCRIPT, opts.socket ?? 'none', scriptFile, ...(opts.qemuArgs ?? [])];
    const started = Date.now();
    const out: Buffer[] = [];
    const log: Buffer[] = [];
    const exitCode = await new Promise<number>((resolve, reject) => {
      const child = spawn('bash', args, { stdio: ['ignore', 'pipe', 'pipe'], env });
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => log.push(c));
      // Backstop in case run-guest.sh's own timeout does not fire.
      const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 20_000);
      child.on('error', (err) => {
        clearTimeout(killer);
        reject(new Error(`e2e harness: cannot start ${RUN_GUEST_SCRIPT}: ${String(err)}`));
      });
      child.on('close', (c, sig) => {
        clearTimeout(killer);
        resolve(c ?? (sig ? 128 + (sig === 'SIGKILL' ? 9 : 15) : 1));
      });
    });
    const wallMs = Date.now() - started;
    const runnerLog = Buffer.concat(log).toString('utf8');
    if (exitCode === 2 && /run-guest: /.test(runnerLog) && !/qemu exit=/.test(runnerLog)) {
      throw new Error(`e2e harness: run-guest.sh refused to start: ${runnerLog.trim()}`);
    }
    let qemuStderr = '';
    try {
      qemuStderr = await readFile(stderrFile, 'utf8');
    } catch {
      // QEMU never started; runnerLog says why.
    }
    return {
      console: Buffer.concat(out).toString('utf8').replace(/\r/g, ''),
      qemuStderr,
      exitCode,
      wallMs,
      runnerLog,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ report parsing

export interface PciResource {
  index: number;
  start: bigint;
  end: bigint;
  flags: bigint;
}

export interface PciDevice {
  bdf: string;
  vendor: number;
  device: number;
  subsystemVendor: number;
  subsystemDevice: number;
  /** 24-bit class code (base class, subclass, prog-if). */
  class: number;
  revision: number;
  irq: number;
  enable: number;
  driver: string | null;
  msiIrqs: number[];
  resources: PciResource[];
  configSize: number;
  /** The config bytes the guest dumped (256, or all of them for non-Intel devices). */
  config: Buffer;
  /** Every key=value line as printed. */
  fields: Record<string, string>;
}

export interface GuestSection {
  name: string;
  /** Exit status printed at the END marker; null if the section never ended. */
  rc: number | null;
  /** Lines between the markers (nested sections' markers included). */
  lines: string[];
  output: string;
  /** 0 for run.sh and the harness's own sections, 1+ for nested ones. */
  depth: number;
}

export interface InterruptLine {
  /** "21", "NMI", "LOC", ... */
  irq: string;
  counts: number[];
  /** Chip, hwirq/trigger and action names. */
  info: string;
}

export interface GuestReport {
  /** The guest's /init started. */
  started: boolean;
  /** The guest's /init reached its end (then it powers off). */
  done: boolean;
  kernelVersion: string | null;
  pci: PciDevice[];
  /** Command sections: run.sh and every section nested in it, in order. */
  sections: GuestSection[];
  /** Status of the per-run script; null if it did not run or did not finish. */
  runRc: number | null;
  interruptLines: string[];
  interrupts: InterruptLine[];
}

const BEGIN_RE = /^=== BEGIN (.+?) ===$/;
const END_RE = /^=== END (.+?) rc=(-?\d+) ===$/;

function num(s: string | undefined): number {
  if (s === undefined || s === '') return NaN;
  return Number(s);
}

/** Parses the console of a guest booted by bootGuest (see harness/guest-init.sh). */
export function parseGuestReport(consoleText: string): GuestReport {
  const lines = consoleText.replace(/\r/g, '').split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const report: GuestReport = {
    started: false,
    done: false,
    kernelVersion: null,
    pci: [],
    sections: [],
    runRc: null,
    interruptLines: [],
    interrupts: [],
  };
  const open: { name: string; lines: string[]; depth: number; section: GuestSection | null }[] = [];
  const allSections: { name: string; rc: number | null; lines: string[] }[] = [];

  for (const line of lines) {
    const hb = /^=== HARNESS BEGIN kernel=(\S+)/.exec(line);
    if (hb) {
      report.started = true;
      report.kernelVersion = hb[1] ?? null;
      continue;
    }
    if (line.startsWith('=== HARNESS DONE')) {
      report.done = true;
      continue;
    }
    if (!report.started) continue;
    const b = BEGIN_RE.exec(line);
    if (b) {
      for (const o of open) o.lines.push(line);
      const name = b[1] ?? '';
      const inRun = open.some((o) => o.name === 'run.sh');
      const isCommand = name === 'run.sh' || inRun;
      const depth = open.length;
      const section: GuestSection | null = isCommand ? { name, rc: null, lines: [], output: '', depth } : null;
      if (section) report.sections.push(section);
      open.push({ name, lines: [], depth, section });
      continue;
    }
    const e = END_RE.exec(line);
    if (e && open.length > 0 && open[open.length - 1]?.name === e[1]) {
      const o = open.pop()!;
      for (const p of open) p.lines.push(line);
      const rc = Number(e[2]);
      if (o.section) {
        o.section.rc = rc;
        o.section.lines = o.lines;
        o.section.output = o.lines.join('\n');
      }
      allSections.push({ name: o.name, rc, lines: o.lines });
      continue;
    }
    for (const o of open) o.lines.push(line);
  }
  // Sections cut off by the end of the console keep what they had.
  for (const o of open) {
    if (o.section) {
      o.section.lines = o.lines;
      o.section.output = o.lines.join('\n');
    }
    allSections.push({ name: o.name, rc: null, lines: o.lines });
  }

  for (const s of allSections) {
    if (s.name.startsWith('pci ')) report.pci.push(parsePci(s.name.slice(4), s.lines));
    else if (s.name === 'interrupts') {
      report.interruptLines = s.lines;
      report.interrupts = parseInterrupts(s.lines);
    } else if (s.name === 'run.sh') report.runRc = s.rc;
  }
  report.pci.sort((a, b) => (a.bdf < b.bdf ? -1 : a.bdf > b.bdf ? 1 : 0));
  return report;
}

function parsePci(bdf: string, lines: string[]): PciDevice {
  const fields: Record<string, string> = {};
  const resources: PciResource[] = [];
  const config: number[] = [];
  for (const line of lines) {
    const r = /^resource (\d+) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+)$/.exec(line);
    if (r) {
      resources.push({ index: Number(r[1]), start: BigInt(r[2]!), end: BigInt(r[3]!), flags: BigInt(r[4]!) });
      continue;
    }
    const c = /^config ([0-9a-f]+):((?: [0-9a-f]{2})+)$/.exec(line);
    if (c) {
      const off = parseInt(c[1]!, 16);
      const bytes = c[2]!.trim().split(' ').map((h) => parseInt(h, 16));
      bytes.forEach((v, i) => (config[off + i] = v));
      continue;
    }
    const kv = /^([a-z_]+)=(.*)$/.exec(line);
    if (kv) fields[kv[1]!] = kv[2]!;
  }
  return {
    bdf,
    vendor: num(fields.vendor),
    device: num(fields.device),
    subsystemVendor: num(fields.subsystem_vendor),
    subsystemDevice: num(fields.subsystem_device),
    class: num(fields.class),
    revision: num(fields.revision),
    irq: num(fields.irq),
    enable: num(fields.enable),
    driver: fields.driver === undefined || fields.driver === '-' ? null : fields.driver,
    msiIrqs: (fields.msi_irqs ?? '').split(/\s+/).filter(Boolean).map(Number),
    resources,
    configSize: num(fields.config_size),
    config: Buffer.from(Array.from(config, (v) => v ?? 0)),
    fields,
  };
}

function parseInterrupts(lines: string[]): InterruptLine[] {
  const out: InterruptLine[] = [];
  for (const line of lines) {
    const m = /^\s*([^\s:]+):\s*(.*)$/.exec(line);
    if (!m) continue; // the "CPU0" header
    const rest = m[2]!.split(/\s+/);
    const counts: number[] = [];
    while (rest.length > 0 && /^\d+$/.test(rest[0]!)) counts.push(Number(rest.shift()));
    out.push({ irq: m[1]!, counts, info: rest.join(' ') });
  }
  return out;
}

/** The command section called `name` (the first one, or the nth with index). */
export function findSection(report: GuestReport, name: string, index = 0): GuestSection | undefined {
  return report.sections.filter((s) => s.name === name)[index];
}

/** QEMU stderr lines that indicate a problem (every line counts unless allowed). */
export function qemuProblems(stderr: string, allowed: RegExp[] = []): string[] {
  return stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !allowed.some((re) => re.test(l)));
}
