/** Open file descriptor accounting for tests (Linux /proc). */
import { fstatSync, readdirSync } from 'node:fs';

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
