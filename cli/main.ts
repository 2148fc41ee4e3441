// `vfio-user` command line: global options, then a subcommand.
//   vfio-user [-v] <command> [options] [args]
//   vfio-user help [COMMAND]
//   vfio-user --version
// Subcommands register in COMMANDS (loaded lazily) and declare their options
// and positionals; cli/args.ts parses them with node:util parseArgs.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { consoleLogger, silentLogger } from '../src/util/logger.js';
import { parseCommandArgs, splitCommandLine } from './args.js';
import { UsageError, type CliCommand, type CliIo } from './types.js';

/** Implemented subcommands, loaded on use. */
export const COMMANDS: Record<string, { summary: string; load: () => Promise<CliCommand> }> = {
  probe: {
    summary: 'connect to a vfio-user server and describe its device',
    load: async () => (await import('./probe.js')).probeCommand,
  },
  server: {
    summary: 'run the timer-interrupt sample device (libvfio-user sample compatible)',
    load: async () => (await importBundled<typeof import('./server.js')>(new URL('./server.js', import.meta.url))).serverCommand,
  },
  client: {
    summary: 'exercise every command of the timer sample, then live-migrate it',
    load: async () => (await import('./client.js')).clientCommand,
  },
  nvme: {
    summary: 'run the NVMe controller sample (one namespace backed by a file)',
    load: async () => (await import('./nvme.js')).nvmeCommand,
  },
  gpio: {
    summary: 'run the ACCES PCI-IDIO-16 GPIO card sample',
    load: async () => (await import('./gpio.js')).gpioCommand,
  },
  vm: {
    summary: 'boot a throwaway Linux guest attached to vfio-user sockets',
    load: async () => (await import('./vm.js')).vmCommandEntry,
  },
  check: {
    summary: 'run the conformance suite against any vfio-user server',
    load: async () => (await import('./check.js')).checkCommand,
  },
  trace: {
    summary: 'proxy a vfio-user connection and decode every message',
    load: async () => (await import('./trace.js')).traceCommand,
  },
};

/**
 * How much older than its module a bundle may be and still count as built
 * from it. npm extracts a package's files one after another (the bundle
 * first: it sorts first) with the time of extraction, so they differ by
 * milliseconds; a tsc run after the bundle rewrites the module seconds later
 * (it type-checks first), and that bundle is stale.
 */
const BUNDLE_SKEW_MS = 1000;

/**
 * Imports the compiled module at `url`, or the single-file bundle beside it
 * (NAME.bundle.js, written by scripts/bundle-cli.mjs after tsc) when that is
 * not older (within BUNDLE_SKEW_MS): one file loads in about a third of the
 * time of the module graph it holds. An older bundle is stale (tsc ran since)
 * and is ignored, as is a missing one (TypeScript sources run through tsx, or
 * no esbuild).
 */
export async function importBundled<T>(url: URL): Promise<T> {
  const bundle = new URL(url.href.replace(/\.js$/, '.bundle.js'));
  let fresh = false;
  try {
    fresh = bundle.href !== url.href && statSync(bundle).mtimeMs >= statSync(url).mtimeMs - BUNDLE_SKEW_MS;
  } catch {
    // No bundle (or no module): import the module as it is.
  }
  return (await import(fresh ? bundle.href : url.href)) as T;
}

export function mainUsage(): string {
  const names = [...Object.keys(COMMANDS).sort(), 'help'];
  const width = Math.max(...names.map((n) => n.length));
  const summary = (n: string): string => (n === 'help' ? 'show this help, or a command\'s' : COMMANDS[n]!.summary);
  return [
    'usage: vfio-user [-v] <command> [options] [args]',
    '       vfio-user help [COMMAND]',
    '       vfio-user --version',
    '',
    'commands:',
    ...names.map((n) => `  ${n.padEnd(width)}  ${summary(n)}`),
    '',
    'options:',
    '  -v, --verbose  log protocol activity to stderr',
    '  -h, --help     show this help (or `vfio-user <command> --help`)',
    '  --version      print the package version',
    '',
  ].join('\n');
}

/** The package's name and version, from the package.json above this file (cli/ or dist/cli/). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'vfio-user-ts') return `${pkg.name} ${pkg.version}`;
    }
    const up = dirname(dir);
    if (up === dir) return 'vfio-user-ts (version unknown)';
    dir = up;
  }
}

export interface MainIo {
  out?: (s: string) => void;
  err?: (s: string) => void;
}

/** Runs the CLI with `argv` (without node and script); resolves with the exit code. */
export async function main(argv: string[], io: MainIo = {}): Promise<number> {
  const out = io.out ?? ((s: string) => void process.stdout.write(s));
  const err = io.err ?? ((s: string) => void process.stderr.write(s));
  let line;
  try {
    line = splitCommandLine(argv);
  } catch (e) {
    err(`vfio-user: ${(e as Error).message}\n\n${mainUsage()}`);
    return 2;
  }
  if (line.version) {
    out(`${packageVersion()}\n`);
    return 0;
  }
  let { command, rest } = line;
  if (command === undefined) {
    if (line.help) {
      out(mainUsage());
      return 0;
    }
    err(mainUsage());
    return 2;
  }
  if (command === 'help') {
    if (rest.length === 0) {
      out(mainUsage());
      return 0;
    }
    if (rest.length > 1) {
      err(`vfio-user help: expected at most one COMMAND\n\n${mainUsage()}`);
      return 2;
    }
    command = rest[0]!;
    rest = ['--help'];
  }
  const entry = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!entry) {
    err(`vfio-user: unknown command '${command}'\n\n${mainUsage()}`);
    return 2;
  }
  const cmd = await entry.load();
  try {
    const args = parseCommandArgs(cmd, rest);
    if (args.help) {
      out(cmd.usage);
      return 0;
    }
    const verbose = line.verbose || args.verbose;
    const cliIo: CliIo = { logger: verbose ? consoleLogger('debug') : silentLogger, verbose, out, err };
    try {
      return await cmd.run(args, cliIo);
    } catch (e) {
      if (e instanceof UsageError) throw e;
      const code = (e as { code?: unknown }).code;
      err(`vfio-user ${command}: ${(e as Error)?.message ?? String(e)}${verbose && code ? ` [${String(code)}]` : ''}\n`);
      if (verbose && (e as Error)?.stack) err(`${(e as Error).stack}\n`);
      return 1;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`vfio-user ${command}: ${e.message}\n\n${cmd.usage}`);
      return 2;
    }
    throw e;
  }
}
