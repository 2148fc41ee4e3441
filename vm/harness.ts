// The guest harness behind `vfio-user vm` and the QEMU end-to-end tests: a
// real QEMU (>= 10.1, vfio-user-pci client) booting a small Linux guest
// attached to vfio-user sockets. Library-free (Node's standard modules only).
// The shell scripts beside this file do the work:
//   setup.sh       prepares (once) a Debian root with QEMU and the guest, in a
//                  cache outside any clone (VFIO_USER_VM_CACHE, default
//                  /var/cache/vfio-user-ts/e2e), shared by every checkout
//   run-guest.sh   boots the guest against the sockets, prints the console
//   guest-init.sh  the guest's /init, prints the report parsed by report.ts
// See NOTES.md for what a guest script can use.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setupErrorCode, VmError } from './errors.js';

/**
 * The directory holding the scripts: beside this module in a checkout
 * (vm/harness.ts), or the package's vm/ when running compiled from dist/vm/.
 */
export const HARNESS_DIR = ((): string => {
  const here = fileURLToPath(new URL('./', import.meta.url));
  const candidates = [here, fileURLToPath(new URL('../../vm/', import.meta.url))];
  return candidates.find((d) => existsSync(join(d, 'setup.sh'))) ?? here;
})();
/** Prepares the cache (root, packages, guest); idempotent. */
export const SETUP_SCRIPT = join(HARNESS_DIR, 'setup.sh');
/** Boots one guest; see its header for the options. */
export const RUN_GUEST_SCRIPT = join(HARNESS_DIR, 'run-guest.sh');
/** The cache used when neither VFIO_USER_VM_CACHE nor VFIO_USER_E2E_CACHE is set. */
export const DEFAULT_CACHE = '/var/cache/vfio-user-ts/e2e';

/** What setup.sh prepared (its harness.json) plus the scripts' paths. */
export interface HarnessPaths {
  /** Cache directory holding everything below. */
  cache: string;
  /** The trixie root QEMU runs from (through its own ld.so). */
  root: string;
  /** This guest recipe's directory (cache/guests/STAMP). */
  guest: string;
  kernel: string;
  initramfs: string;
  kernelVersion: string;
  qemuVersion: string;
  /** Kernel modules in the guest's /modules, in a valid load order. */
  guestModules: string[];
  setupScript: string;
  runGuestScript: string;
}

/** The cache directory the scripts use (environment, else DEFAULT_CACHE). */
export function cacheDir(): string {
  return process.env.VFIO_USER_VM_CACHE || process.env.VFIO_USER_E2E_CACHE || DEFAULT_CACHE;
}

/** Options of ensureHarness(). */
export interface EnsureOptions {
  /** Receives setup.sh's progress output (stderr) as it comes; default: dropped. */
  onOutput?: (text: string) => void;
}

const harnessPromises = new Map<string, Promise<HarnessPaths>>();

/**
 * Prepares the harness (runs setup.sh; well under a second when the cache is
 * complete) and returns its paths. One run per cache directory and process.
 * Rejects with a VmError whose code names the cause (not root the first time,
 * no package access, no QEMU with vfio-user-pci) and whose message ends with
 * the tail of setup.sh's output.
 */
export function ensureHarness(opts: EnsureOptions = {}): Promise<HarnessPaths> {
  const key = `${cacheDir()}\0${process.env.VFIO_USER_VM_MODULES ?? ''}`;
  let p = harnessPromises.get(key);
  if (!p) {
    p = runSetup(opts);
    harnessPromises.set(key, p);
    // A failure is not cached: the next call tries again (after `sudo`, say).
    p.catch(() => harnessPromises.delete(key));
  }
  return p;
}

async function runSetup(opts: EnsureOptions): Promise<HarnessPaths> {
  const tail: string[] = [];
  let stdout = '';
  const keep = (chunk: Buffer): void => {
    const text = chunk.toString('utf8');
    opts.onOutput?.(text);
    tail.push(...text.split('\n'));
    if (tail.length > 60) tail.splice(0, tail.length - 60);
  };
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn('bash', [SETUP_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
  }).catch((err: unknown) => {
    throw new VmError('VM_SPAWN_FAILED', `cannot run ${SETUP_SCRIPT}: ${String(err)}`, SETUP_SCRIPT);
  });
  if (code !== 0) {
    const errLine = tail.find((l) => /^setup: ERROR\[/.test(l));
    const m = errLine ? /^setup: ERROR\[([a-z-]+)\]: (.*)$/.exec(errLine) : null;
    const summary = m?.[2] ?? `${SETUP_SCRIPT} failed with exit status ${code}`;
    throw new VmError(
      setupErrorCode(m?.[1]),
      `${summary}\n--- last output of ${SETUP_SCRIPT} ---\n${tail.join('\n').trim()}`,
      SETUP_SCRIPT,
    );
  }
  const infoFile = stdout.trim().split('\n').pop() ?? '';
  let info: Omit<HarnessPaths, 'setupScript' | 'runGuestScript'>;
  try {
    info = JSON.parse(await readFile(infoFile, 'utf8')) as typeof info;
  } catch (err) {
    throw new VmError('VM_SETUP_FAILED', `setup.sh succeeded but its harness.json '${infoFile}' is unreadable: ${String(err)}`, infoFile);
  }
  return { ...info, setupScript: SETUP_SCRIPT, runGuestScript: RUN_GUEST_SCRIPT };
}

/** What to boot. Every field is optional: the default is a 512 MiB, 1-vCPU guest without devices. */
export interface BootOptions {
  /** A listening vfio-user server's socket; null = none. Same as `sockets: [socket]`. */
  socket?: string | null;
  /** Listening vfio-user servers, attached in slots 1, 2, ... (0000:00:01.0 is the first). */
  sockets?: string[];
  /** Shell script (busybox sh) the guest runs as /run.sh; `section NAME CMD...` and
   *  `loadmod MODULE...` are available in it. */
  guestScript?: string;
  /** Guest RAM in MiB (default 512): a memfd with share=on, allocated as the guest touches it. */
  memMiB?: number;
  /** vCPUs (default 1). */
  smp?: number;
  /** A qemu-system-x86_64 to use instead of the cache's. */
  qemu?: string;
  /** Load each device's stock driver by its modalias before the PCI report. */
  autoload?: boolean;
  /** Interactive: QEMU reads the terminal (our stdin) and the guest gives a shell after the script. */
  console?: boolean;
  /** Hard limit for the whole boot (default 180 s; 0 = none); QEMU is killed after it. */
  timeoutMs?: number;
  /** Extra QEMU arguments, appended as they are. */
  qemuArgs?: string[];
  /** Extra JSON members for every vfio-user-pci device, e.g. ',"x-msg-timeout":10000'. */
  deviceOpts?: string;
  /** Extra kernel command line. */
  kernelAppend?: string;
  /** Directory whose files are added to the guest's root next to /run.sh. */
  guestOverlayDir?: string;
  /** Receives the serial console as it comes (CRs kept). */
  onConsole?: (text: string) => void;
  /** Aborting kills QEMU (the result then has exit code 130). */
  signal?: AbortSignal;
}

/** How a boot went. */
export interface BootResult {
  /** Serial console, CRs removed. */
  console: string;
  /** Everything QEMU wrote to stderr; a healthy run has none. */
  qemuStderr: string;
  /** QEMU's exit status (0 = the guest powered off); 124 = timeout. */
  exitCode: number;
  wallMs: number;
  /** run-guest.sh's own messages (accelerator, status line, timeout notice). */
  runnerLog: string;
}

/** run-guest.sh's arguments for `opts` (the script file is passed separately). */
export function runGuestArgs(opts: BootOptions, scriptFile: string | null, stderrFile: string): string[] {
  const args: string[] = [];
  const sockets = [...(opts.socket ? [opts.socket] : []), ...(opts.sockets ?? [])];
  for (const s of sockets) args.push('--socket', s);
  if (scriptFile !== null) args.push('--script', scriptFile);
  if (opts.memMiB !== undefined) args.push('--mem', String(opts.memMiB));
  if (opts.smp !== undefined) args.push('--smp', String(opts.smp));
  if (opts.qemu !== undefined) args.push('--qemu', opts.qemu);
  if (opts.autoload) args.push('--autoload');
  if (opts.console) args.push('--console');
  if (opts.deviceOpts !== undefined) args.push('--device-opts', opts.deviceOpts);
  if (opts.kernelAppend !== undefined) args.push('--append', opts.kernelAppend);
  if (opts.guestOverlayDir !== undefined) args.push('--overlay', opts.guestOverlayDir);
  const timeoutMs = opts.timeoutMs ?? 180_000;
  args.push('--timeout', String(timeoutMs === 0 ? 0 : Math.max(1, Math.ceil(timeoutMs / 1000))));
  args.push('--stderr', stderrFile);
  if (opts.qemuArgs && opts.qemuArgs.length > 0) args.push('--', ...opts.qemuArgs);
  return args;
}

/** Boots the guest once; resolves when QEMU has exited (or was killed at the timeout). */
export async function bootGuest(opts: BootOptions = {}): Promise<BootResult> {
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const work = await mkdtemp(join(tmpdir(), 'vfio-user-vm-'));
  try {
    let scriptFile: string | null = null;
    if (opts.guestScript !== undefined) {
      scriptFile = join(work, 'run.sh');
      await writeFile(scriptFile, opts.guestScript.endsWith('\n') ? opts.guestScript : `${opts.guestScript}\n`);
    }
    const stderrFile = join(work, 'qemu.stderr');
    const args = [RUN_GUEST_SCRIPT, ...runGuestArgs(opts, scriptFile, stderrFile)];
    const started = Date.now();
    const out: Buffer[] = [];
    const log: Buffer[] = [];
    const exitCode = await new Promise<number>((resolve, reject) => {
      // Its own process group, so that a kill reaches QEMU under run-guest.sh and timeout.
      const child = spawn('bash', args, { stdio: [opts.console ? 'inherit' : 'ignore', 'pipe', 'pipe'], detached: true });
      const killGroup = (sig: NodeJS.Signals): void => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, sig);
        } catch {
          // already gone
        }
      };
      let aborted = false;
      const onAbort = (): void => {
        aborted = true;
        killGroup('SIGTERM');
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.signal?.aborted) onAbort();
      child.stdout.on('data', (c: Buffer) => {
        out.push(c);
        opts.onConsole?.(c.toString('utf8'));
      });
      child.stderr.on('data', (c: Buffer) => log.push(c));
      // Backstop in case run-guest.sh's own timeout does not fire.
      const killer = timeoutMs > 0 ? setTimeout(() => killGroup('SIGKILL'), timeoutMs + 20_000) : undefined;
      const done = (): void => {
        clearTimeout(killer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      child.on('error', (err) => {
        done();
        reject(new VmError('VM_SPAWN_FAILED', `cannot start ${RUN_GUEST_SCRIPT}: ${String(err)}`, RUN_GUEST_SCRIPT));
      });
      child.on('close', (c, sig) => {
        done();
        if (aborted) resolve(130);
        else resolve(c ?? (sig ? 128 + (sig === 'SIGKILL' ? 9 : 15) : 1));
      });
    });
    const wallMs = Date.now() - started;
    const runnerLog = Buffer.concat(log).toString('utf8');
    if (exitCode === 2 && /run-guest: /.test(runnerLog) && !/qemu exit=/.test(runnerLog)) {
      const msg = runnerLog.trim().split('\n').filter((l) => l.startsWith('run-guest: ')).pop() ?? runnerLog.trim();
      throw new VmError(/vfio-user-pci|no QEMU/.test(msg) ? 'VM_NO_QEMU' : 'VM_BAD_RUN', msg.replace(/^run-guest: /, ''), RUN_GUEST_SCRIPT);
    }
    let qemuStderr = '';
    try {
      qemuStderr = await readFile(stderrFile, 'utf8');
    } catch {
      // QEMU never started; runnerLog says why.
    }
    return { console: Buffer.concat(out).toString('utf8').replace(/\r/g, ''), qemuStderr, exitCode, wallMs, runnerLog };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
