import { lstatSync, unlinkSync } from 'node:fs';
import { isNativeError, native } from '../native/binding.js';
import { VfioUserError } from '../protocol/errors.js';

/**
 * listen() refused a path: a server accepts connections there, or a file that
 * is not a stale socket is in the way. Nothing at the path was touched.
 * `code` is 'EADDRINUSE', as Node's own servers report it.
 */
export class SocketInUseError extends VfioUserError {
  readonly path: string;
  readonly syscall = 'listen';
  constructor(path: string, why: string, options?: { cause?: unknown }) {
    super('EADDRINUSE', `listen EADDRINUSE: ${path}: ${why}`, options);
    this.path = path;
  }
}

/**
 * Makes `path` free for a new listening socket without taking it from anyone:
 * a socket nobody accepts on (connect gets ECONNREFUSED) is a leftover of a
 * server that died and is removed; a live one (connect succeeds, or its
 * backlog is full) or any other file is refused with SocketInUseError. The
 * probe never blocks; a live server sees a connection that closes at once.
 */
export function claimSocketPath(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!isSocket) throw new SocketInUseError(path, 'a file that is not a socket is there');
  let fd: number;
  try {
    fd = native.connect(path, false);
  } catch (e) {
    if (isNativeError(e, 'ECONNREFUSED')) {
      try {
        unlinkSync(path);
      } catch (u) {
        if ((u as NodeJS.ErrnoException).code !== 'ENOENT') throw u;
      }
      return;
    }
    if (isNativeError(e, 'ENOENT')) return;
    if (isNativeError(e, 'EAGAIN')) throw new SocketInUseError(path, 'a server is accepting connections there (its backlog is full)');
    throw e;
  }
  native.close(fd);
  throw new SocketInUseError(path, 'a server is accepting connections there');
}
