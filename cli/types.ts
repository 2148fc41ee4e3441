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

/** A `vfio-user <name>` subcommand. */
export interface CliCommand {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Full usage text for `vfio-user <name> --help`. */
  usage: string;
  /** Returns the exit code. Arguments exclude the command name and the global -v. */
  run(args: string[], io: CliIo): Promise<number>;
}

/** A usage error: main prints the message and the command's usage, exit 2. */
export class UsageError extends Error {}
