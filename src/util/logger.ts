/**
 * The one logging interface of the library. Quiet by default; the CLI's -v
 * installs a console logger. Messages carry no trailing newline.
 */
export interface Logger {
  /** Protocol-level detail (every message with `-v`). */
  debug(msg: string): void;
  /** Lifecycle events: listening, client connected, reset. */
  info(msg: string): void;
  /** Something was refused or recovered from. */
  warn(msg: string): void;
  /** Something failed that the caller should know about. */
  error(msg: string): void;
}

/** A logger threshold; `silent` drops everything. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };

const noop = (): void => {};

/** The default logger: drops every message. */
export const silentLogger: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop });

/** Logs to stderr with a prefix, dropping messages below `level`. */
export function consoleLogger(level: LogLevel = 'info', prefix = 'vfio-user'): Logger {
  const at = order[level];
  const emit = (lvl: LogLevel) =>
    order[lvl] >= at ? (msg: string) => process.stderr.write(`${prefix}: ${lvl === 'info' ? '' : lvl + ': '}${msg}\n`) : noop;
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}
