import { commandName } from './commands.js';
import { Errno, errnoName } from './errno.js';

/**
 * Base class of every error the library throws on purpose. `code` is stable
 * and documented (tests and users switch on it); the message is for humans.
 */
export class VfioUserError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A message (or part of one) that violates the protocol. `errno` is what goes
 * back to the peer in an error reply. Decoders throw nothing else.
 */
export class ProtocolError extends VfioUserError {
  readonly errno: number;
  constructor(errno: number, message: string, options?: { cause?: unknown }) {
    super('ERR_VFIO_USER_PROTOCOL', `${message} (${errnoName(errno)})`, options);
    this.errno = errno;
  }
}

/** The peer answered a request with an error reply; the message names the command (e.g. REGION_READ) and the errno. */
export class RemoteError extends VfioUserError {
  readonly errno: number;
  readonly command: number;
  constructor(command: number, errno: number) {
    super('ERR_VFIO_USER_REMOTE', `peer refused ${commandName(command).replace(/^VFIO_USER_/, '')}: ${errnoName(errno)}`);
    this.errno = errno;
    this.command = command;
  }
}

/** Convenience constructors for the errnos decoders use most. */
export const einval = (msg: string): ProtocolError => new ProtocolError(Errno.EINVAL, msg);
/** A ProtocolError with E2BIG. */
export const e2big = (msg: string): ProtocolError => new ProtocolError(Errno.E2BIG, msg);
