import type { ParseArgsConfig } from 'node:util';
import type { Logger } from '../src/util/logger.js';

/** What main.ts hands every subcommand. */
export interface CliIo {
  logger: Logger;
  verbose: boolean;
  /** Writes to stdout (no newline added). */
  out(text: string): void;
  /** Writes to stderr (no newline added). */
  err(text: string): void;
}

/** Option declarations in node:util parseArgs form. */
export type CliOptions = NonNullable<ParseArgsConfig['options']>;

/** A subcommand's parsed arguments. */
export interface CliArgs {
  /** Option values by long name (strings, or true for flags); absent options are undefined. */
  values: Record<string, string | boolean | undefined>;
  /** Positional arguments, one per name in CliCommand.positionals. */
  positionals: string[];
}

/** A `vfio-user <name>` subcommand. */
export interface CliCommand {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Full usage text for `vfio-user help <name>` and `vfio-user <name> --help`. */
  usage: string;
  /** Its options besides -v/--verbose and -h/--help, which every command takes. */
  options?: CliOptions;
  /** Names of its positional arguments, all required (e.g. ['SOCKET']). */
  positionals: string[];
  /**
   * The command parses its own arguments: they reach run() as positionals,
   * after any leading -v/--verbose and -h/--help. For commands whose option
   * values may start with '-' (QEMU arguments), which parseArgs refuses.
   */
  rawArguments?: boolean;
  /** Returns the exit code. */
  run(args: CliArgs, io: CliIo): Promise<number>;
}

/** A usage error: main prints the message and the command's usage, exit 2. */
export class UsageError extends Error {}
