// The QEMU end-to-end tests use the harness that `vfio-user vm` ships (vm/):
// the same scripts and the same cache. This module re-exports it and adds what
// only tests need: boots shared between the cases of a file and a logger that
// collects the server's warnings for assertions.
import type { Logger } from '../../src/util/logger.js';

export * from '../../vm/errors.js';
export * from '../../vm/harness.js';
export * from '../../vm/report.js';

/**
 * Memoises an async function: the first call runs it, every later call gets
 * the same promise. A test file boots its guest once this way and each test
 * case asserts on its own part of the result.
 */
export function shared<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

/** A logger that keeps what a server logged at warn and error level. */
export interface CollectingLogger {
  logger: Logger;
  /** "warn: ..." and "error: ..." lines, in order. */
  problems: string[];
  /** Every line at any level ("debug: ...", ...), in order. */
  all: string[];
  /** The problems matching none of `expected`. */
  unexpected(expected?: RegExp[]): string[];
}

/** Builds a CollectingLogger; `onLine` also sees every line (e.g. to count one). */
export function collectingLogger(onLine?: (level: string, msg: string) => void): CollectingLogger {
  const problems: string[] = [];
  const all: string[] = [];
  const at = (level: 'debug' | 'info' | 'warn' | 'error') => (msg: string) => {
    all.push(`${level}: ${msg}`);
    if (level === 'warn' || level === 'error') problems.push(`${level}: ${msg}`);
    onLine?.(level, msg);
  };
  return {
    logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
    problems,
    all,
    unexpected: (expected = []) => problems.filter((p) => !expected.some((re) => re.test(p))),
  };
}
