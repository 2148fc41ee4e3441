// `vfio-user vm [--mem MIB] [--smp N] [--run CMD]... [--console] [--qemu PATH]
//               [--qemu-arg ARG]... SOCKET...`
// Boots a throwaway Linux guest under QEMU attached to vfio-user servers,
// shows how the guest sees each device, runs commands in it (or gives a
// console), and exits with the status the guest reported. The harness is in
// vm/ (shared with the end-to-end tests); this file is argument handling and
// presentation.
import { statSync } from 'node:fs';
import { ConsoleStream } from '../vm/console-stream.js';
import { bdfOfSocket, describeDevice } from '../vm/describe.js';
import { VmError } from '../vm/errors.js';
import { bootGuest, ensureHarness } from '../vm/harness.js';
import { parseGuestReport, qemuProblems } from '../vm/report.js';
import { runLinesScript, runSectionName } from '../vm/run-lines.js';
import { UsageError, type CliCommand, type CliIo } from './types.js';

/** Parsed `vfio-user vm` arguments. */
export interface VmArgs {
  memMiB: number;
  smp: number;
  run: string[];
  console: boolean;
  qemu?: string;
  qemuArgs: string[];
  /** Seconds before QEMU is killed; 0 = never. */
  timeout: number;
  sockets: string[];
}

/** Largest --mem accepted (1 TiB): a guest's RAM is a sparse memfd, but QEMU still sizes its tables by it. */
export const VM_MAX_MEM_MIB = 1 << 20;
/** Largest --smp accepted (q35's limit without extra options is 288; beyond 64 TCG is pointless). */
export const VM_MAX_SMP = 64;

export const VM_USAGE = [
  'usage: vfio-user vm [--mem MIB] [--smp N] [--run CMD]... [--console] [--qemu PATH]',
  '                    [--qemu-arg ARG]... [--timeout S] SOCKET...',
  '',
  'Boots a throwaway Linux guest under QEMU (10.1 or later, vfio-user-pci) with one',
  'vfio-user-pci device per SOCKET (listening servers: slots 00:01.0, 00:02.0, ...).',
  'The guest loads each device\'s stock driver by its modalias, prints how it sees',
  'the device (IDs, BARs, IRQ, bound driver), runs each --run line in one guest',
  'shell, powers off, and vfio-user vm exits with the status of the last --run line',
  'as the guest reported it.',
  '',
  '  --mem MIB        guest RAM (default 512), a shared memfd the servers map;',
  '                   pages are allocated only as the guest touches them',
  '  --smp N          vCPUs (default 1)',
  '  --run CMD        a command line for the guest shell (busybox sh); repeatable',
  '  --console        after the --run lines, an interactive shell on this terminal;',
  '                   exit it (or ^D) to power off; ^A x kills QEMU. The exit status',
  '                   is then the shell\'s',
  '  --qemu PATH      use this qemu-system-x86_64 instead of the cached Debian one',
  '  --qemu-arg ARG   append ARG to QEMU\'s command line; repeatable. A device added',
  '                   this way needs an addr= past the sockets\' slots (e.g. addr=0x10):',
  '                   QEMU places it before the vfio-user devices otherwise',
  '  --timeout S      kill QEMU after S seconds (default: never)',
  '',
  'The first run builds the guest and QEMU into /var/cache/vfio-user-ts/e2e',
  '(VFIO_USER_VM_CACHE) with apt and debootstrap, as root, in about two minutes;',
  'later runs start in seconds. KVM is used when /dev/kvm is usable, TCG otherwise.',
  'The guest has the drivers of the samples (gpio-pci-idio-16, nvme); name more in',
  'VFIO_USER_VM_MODULES (e.g. "virtio_net,e1000e") and a guest with them is built.',
  '-v shows the whole console and the setup output.',
  '',
].join('\n');

function positiveInt(opt: string, v: string | undefined, max: number): number {
  if (v === undefined) throw new UsageError(`${opt} needs a value`);
  if (!/^[1-9]\d*$/.test(v) || Number(v) > max) throw new UsageError(`${opt} wants a whole number from 1 to ${max}, not '${v}'`);
  return Number(v);
}

/** Parses the arguments after `vm`; throws UsageError on bad ones. */
export function parseVmArgs(argv: string[]): VmArgs {
  const a: VmArgs = { memMiB: 512, smp: 1, run: [], console: false, qemuArgs: [], timeout: 0, sockets: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string | undefined => (eq > 0 ? arg.slice(eq + 1) : argv[++i]);
    switch (name) {
      case '--mem':
        a.memMiB = positiveInt('--mem', value(), VM_MAX_MEM_MIB);
        break;
      case '--smp':
        a.smp = positiveInt('--smp', value(), VM_MAX_SMP);
        break;
      case '--run': {
        const v = value();
        if (v === undefined) throw new UsageError('--run needs a command');
        a.run.push(v);
        break;
      }
      case '--console':
        a.console = true;
        break;
      case '--qemu': {
        const v = value();
        if (!v) throw new UsageError('--qemu needs a PATH');
        a.qemu = v;
        break;
      }
      case '--qemu-arg': {
        const v = value();
        if (v === undefined) throw new UsageError('--qemu-arg needs an argument');
        a.qemuArgs.push(v);
        break;
      }
      case '--timeout': {
        const v = value();
        if (v === undefined || !/^\d+$/.test(v)) throw new UsageError(`--timeout wants seconds, not '${v ?? ''}'`);
        a.timeout = Number(v);
        break;
      }
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}`);
        a.sockets.push(arg);
    }
  }
  if (a.sockets.length === 0) throw new UsageError('expected at least one SOCKET');
  if (a.sockets.length > 30) throw new UsageError('at most 30 SOCKETs (PCI slots 1-30)');
  return a;
}

/** Runs `vfio-user vm`; resolves with the exit status. */
export async function vmCommand(argv: string[], io: CliIo): Promise<number> {
  const args = parseVmArgs(argv);
  for (const s of args.sockets) {
    let isSocket = false;
    try {
      isSocket = statSync(s).isSocket();
    } catch {
      // reported below
    }
    if (!isSocket) throw new VmError('VM_BAD_RUN', `${s} is not a UNIX socket: start the vfio-user server first`, s);
  }

  // setup.sh is quiet when the cache is complete; show its progress only when it builds.
  let building = io.verbose;
  await ensureHarness({
    onOutput: (text) => {
      if (/\] building/.test(text)) {
        if (!building) io.err('vfio-user vm: preparing the guest (first run, about two minutes)\n');
        building = true;
      }
      if (building) io.err(text);
    },
  });

  const origin = new Map(args.sockets.map((s, i) => [bdfOfSocket(i), s]));
  let lastRun: { name: string; rc: number } | null = null;
  let consoleRc: number | null = null;
  const stream = new ConsoleStream({
    device: (d) => {
      if (origin.has(d.bdf)) io.out(`${describeDevice(d, origin.get(d.bdf))}\n`);
      else if (io.verbose) io.out(`${describeDevice(d)}\n`);
    },
    sectionBegin: (name, depth) => {
      const i = args.run.findIndex((_, k) => runSectionName(k) === name);
      if (depth === 1 && i >= 0) io.out(`vm# ${args.run[i]}\n`);
    },
    output: (line) => io.out(`${line}\n`),
    sectionEnd: (name, rc, depth) => {
      if (depth === 1 && name.startsWith('run ')) lastRun = { name, rc };
    },
    consoleBegin: () => io.err('vfio-user vm: console (exit or ^D powers off, ^A x kills QEMU)\n'),
    raw: (t) => io.out(t),
    consoleEnd: (rc) => (consoleRc = rc),
    other: (line) => {
      if (io.verbose) io.err(`${line}\n`);
    },
  });

  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let res;
  try {
    res = await bootGuest({
      sockets: args.sockets,
      memMiB: args.memMiB,
      smp: args.smp,
      autoload: true,
      console: args.console,
      guestScript: runLinesScript(args.run),
      ...(args.qemu !== undefined ? { qemu: args.qemu } : {}),
      qemuArgs: args.qemuArgs,
      timeoutMs: args.timeout * 1000,
      onConsole: (t) => stream.feed(t),
      signal: abort.signal,
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  stream.end();
  const problems = qemuProblems(res.qemuStderr);
  for (const p of problems) io.err(`qemu: ${p}\n`);
  if (io.verbose) io.err(res.runnerLog);
  if (abort.signal.aborted) {
    io.err('vfio-user vm: interrupted, QEMU killed\n');
    return 130;
  }
  const report = parseGuestReport(res.console);
  for (const [bdf, sock] of origin) {
    if (report.started && !report.pci.some((d) => d.bdf === bdf)) io.err(`vfio-user vm: the guest sees no device at ${bdf} (${sock})\n`);
  }
  if (!report.done) {
    const why = res.exitCode === 124 ? `timed out after ${args.timeout} s` : `QEMU exited with status ${res.exitCode}`;
    io.err(`vfio-user vm: the guest did not finish (${why})${report.started ? '' : '; it never reached its /init'}\n`);
    if (!report.started && !io.verbose) io.err(`${res.runnerLog.trim()}\n`);
    return 1;
  }
  if (args.console) return consoleRc ?? 1;
  if (args.run.length === 0) return 0;
  // The last line's status; when a line exited the shell, the script's.
  const last = lastRun as { name: string; rc: number } | null;
  if (last && last.name === runSectionName(args.run.length - 1)) return last.rc;
  return report.runRc ?? 1;
}

/** The `vfio-user vm` subcommand. */
export const vmCommandEntry: CliCommand = {
  name: 'vm',
  summary: 'boot a throwaway Linux guest attached to vfio-user sockets',
  usage: VM_USAGE,
  positionals: ['SOCKET...'],
  // QEMU arguments (--qemu-arg -smbios) start with '-': parseVmArgs reads them.
  rawArguments: true,
  run: (args, io) => vmCommand(args.positionals, io),
};
