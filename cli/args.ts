// Argument parsing for the CLI, on node:util parseArgs: the global options
// before the command, then each command's declared options and positionals.
import { parseArgs } from 'node:util';
import { UsageError, type CliArgs, type CliCommand, type CliOptions } from './types.js';

/** Options every command takes. */
export const COMMON_OPTIONS = {
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies CliOptions;

/** Options before the command. */
export const GLOBAL_OPTIONS = {
  ...COMMON_OPTIONS,
  version: { type: 'boolean' },
} as const satisfies CliOptions;

/** parseArgs' errors as a UsageError with a short message. */
function usageError(e: unknown): UsageError {
  const err = e as Error & { code?: string };
  const opt = /'([^']+)'/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`unknown option ${opt ?? ''}`.trim());
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/argument missing/.test(err.message)) return new UsageError(`option ${(opt ?? '').replace(/ <value>$/, '')} needs a value`);
      return new UsageError(err.message.replace(/^Option /, 'option '));
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument ${opt ?? ''}`.trim());
    default:
      return new UsageError(err.message);
  }
}

/** The command line split at the command: global options, the command's name and its arguments. */
export interface SplitCommandLine {
  verbose: boolean;
  help: boolean;
  version: boolean;
  command: string | undefined;
  rest: string[];
}

/** Parses the global options up to the first positional (the command). Throws UsageError. */
export function splitCommandLine(argv: string[]): SplitCommandLine {
  // The globals are flags, so the first positional token is the command.
  const { tokens } = parseArgs({ args: argv, options: GLOBAL_OPTIONS, strict: false, allowPositionals: true, tokens: true });
  const first = tokens.find((t) => t.kind === 'positional' || t.kind === 'option-terminator');
  const cut = first ? first.index : argv.length;
  const commandAt = first?.kind === 'option-terminator' ? cut + 1 : cut;
  let values;
  try {
    ({ values } = parseArgs({ args: argv.slice(0, cut), options: GLOBAL_OPTIONS, strict: true, allowPositionals: false }));
  } catch (e) {
    throw usageError(e);
  }
  return {
    verbose: values.verbose === true,
    help: values.help === true,
    version: values.version === true,
    command: argv[commandAt],
    rest: argv.slice(commandAt + 1),
  };
}

/** Parses a command's arguments against its declaration. Throws UsageError. */
export function parseCommandArgs(cmd: CliCommand, args: string[]): CliArgs & { verbose: boolean; help: boolean } {
  if (cmd.rawArguments) {
    let i = 0;
    let verbose = false;
    let help = false;
    for (; i < args.length; i++) {
      if (args[i] === '-v' || args[i] === '--verbose') verbose = true;
      else if (args[i] === '-h' || args[i] === '--help') help = true;
      else break;
    }
    return { values: {}, positionals: args.slice(i), verbose, help };
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...cmd.options, ...COMMON_OPTIONS }, strict: true, allowPositionals: true });
  } catch (e) {
    throw usageError(e);
  }
  const { values, positionals } = parsed as { values: Record<string, string | boolean | undefined>; positionals: string[] };
  const help = values.help === true;
  if (!help) {
    const names = cmd.positionals;
    if (positionals.length < names.length) throw new UsageError(`missing ${names.slice(positionals.length).join(' ')}`);
    if (positionals.length > names.length) throw new UsageError(`unexpected argument ${positionals[names.length]}`);
  }
  return { values, positionals, verbose: values.verbose === true, help };
}

/** A string option's value, or undefined. */
export function stringOption(args: CliArgs, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : undefined;
}
