/** Open file descriptor accounting for tests (Linux /proc). */
import { fstatSync, readFileSync, readdirSync } from 'node:fs';

/**
 * The fds open in this process, ascending. The listing of /proc/self/fd
 * includes the fd readdir used for the directory, closed by the time it
 * returns: fds that no longer fstat are dropped.
 */
export function listOpenFds(): number[] {
  return readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => {
      try {
        fstatSync(fd);
        return true;
      } catch {
        return false;
      }
    })
    .sort((x, y) => x - y);
}

/** Number of open fds, not counting the one used to read /proc/self/fd. */
export function countOpenFds(): number {
  return readdirSync('/proc/self/fd').length - 1;
}

/**
 * True when `fd` is an eventfd (its /proc fdinfo has an eventfd-count line).
 * Interrupt fds from a client must be eventfds: a write to one never blocks
 * short of counter overflow, while a pipe's could stall the event loop.
 */
export function isEventFd(fd: number): boolean {
  try {
    return readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1').includes('eventfd-count:');
  } catch {
    return false;
  }
}
