// `vfio-user` command line: global options, then a subcommand.
//   vfio-user [-v] <command> [args...]
// Subcommands register in COMMANDS (loaded lazily); only those present are listed.
import { consoleLogger, silentLogger } from '../src/util/logger.js';
import { UsageError, type CliCommand, type CliIo } from './types.js';

/** Implemented subcommands, loaded on use. Other commands add themselves here. */
export const COMMANDS: Record<string, { summary: string; load: () => Promise<CliCommand> }> = {
  probe: {
    summary: 'connect to a vfio-user server and describe its device',
    load: async () => (await import('./probe.js')).probeCommand,
  },
  server: {
    summary: 'run the timer-interrupt sample device (libvfio-user sample compatible)',
    load: async () => (await import('./server.js')).serverCommand,
  },
  client: {
    summary: 'exercise every command of the timer sample, then live-migrate it',
    load: async () => (await import('./client.js')).clientCommand,
  },
  nvme: {
    summary: 'run the NVMe controller sample (one namespace backed by a file)',
    load: async () => {
      const m = await import('./nvme.js');
      return {
        name: 'nvme',
        summary: 'run the NVMe controller sample (one namespace backed by a file)',
        usage: m.NVME_USAGE,
        run: (args, io) => m.nvmeCommand(io.verbose ? ['-v', ...args] : args),
      };
    },
  },
  gpio: {
    summary: 'run the ACCES PCI-IDIO-16 GPIO card sample',
    load: async () => (await import('./gpio.js')).gpioCommand,
  },
  vm: {
    summary: 'boot a throwaway Linux guest attached to vfio-user sockets',
    load: async () => (await import('./vm.js')).vmCommandEntry,
  },
};

export function mainUsage(): string {
  const names = Object.keys(COMMANDS).sort();
  const width = Math.max(...names.map((n) => n.length));
  return [
    'usage: vfio-user [-v] <command> [options]',
    '',
    'commands:',
    ...names.map((n) => `  ${n.padEnd(width)}  ${COMMANDS[n]!.summary}`),
    '',
    'options:',
    '  -v, --verbose  log protocol activity to stderr',
    '  -h, --help     show this help (or `vfio-user <command> --help`)',
    '',
  ].join('\n');
}

export interface MainIo {
  out?: (s: string) => void;
  err?: (s: string) => void;
}

/** Runs the CLI with `argv` (without node and script); resolves with the exit code. */
export async function main(argv: string[], io: MainIo = {}): Promise<number> {
  const out = io.out ?? ((s: string) => void process.stdout.write(s));
  const err = io.err ?? ((s: string) => void process.stderr.write(s));
  let verbose = false;
  const rest: string[] = [];
  let command: string | undefined;
  let help = false;
  for (const a of argv) {
    if (command === undefined && (a === '-h' || a === '--help')) help = true;
    else if (a === '-v' || a === '--verbose') verbose = true;
    else if (command === undefined && a.startsWith('-')) {
      err(`vfio-user: unknown option ${a}\n\n${mainUsage()}`);
      return 2;
    } else if (command === undefined) command = a;
    else rest.push(a);
  }
  if (command === undefined) {
    if (help) {
      out(mainUsage());
      return 0;
    }
    err(mainUsage());
    return 2;
  }
  const entry = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!entry) {
    err(`vfio-user: unknown command '${command}'\n\n${mainUsage()}`);
    return 2;
  }
  const cmd = await entry.load();
  if (rest.includes('-h') || rest.includes('--help')) {
    out(cmd.usage);
    return 0;
  }
  const cliIo: CliIo = { logger: verbose ? consoleLogger('debug') : silentLogger, verbose, out, err };
  try {
    return await cmd.run(rest, cliIo);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`vfio-user ${command}: ${e.message}\n\n${cmd.usage}`);
      return 2;
    }
    const code = (e as { code?: unknown }).code;
    err(`vfio-user ${command}: ${(e as Error)?.message ?? String(e)}${verbose && code ? ` [${String(code)}]` : ''}\n`);
    if (verbose && (e as Error)?.stack) err(`${(e as Error).stack}\n`);
    return 1;
  }
}
