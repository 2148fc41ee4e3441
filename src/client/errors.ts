import { Errno, errnoName } from '../protocol/errno.js';
import { RemoteError, VfioUserError } from '../protocol/errors.js';
import { commandName } from '../protocol/commands.js';

/**
 * Stable codes of the errors the client raises for local problems. Error
 * replies from the server are RemoteError (protocol/errors.ts, with errno);
 * a closed connection is TransportClosedError; a reply that never came is
 * RequestTimeoutError.
 */
export const ClientErrorCode = {
  /** VERSION negotiation failed (major/minor, twin socket without fd...). */
  NEGOTIATION: 'ERR_VFIO_USER_NEGOTIATION',
  /**
   * The server refused the connection: it answered VERSION with an error,
   * EBUSY when another client is attached, EACCES when this uid is not
   * allowed. The RemoteError is the cause.
   */
  REFUSED: 'ERR_VFIO_USER_REFUSED',
  /** The server's reply did not decode or did not match the request. */
  BAD_REPLY: 'ERR_VFIO_USER_BAD_REPLY',
  /** A bad argument (size, index, alignment...). */
  INVALID_ARG: 'ERR_VFIO_USER_INVALID_ARG',
  /** The client was closed. */
  CLOSED: 'ERR_VFIO_USER_CLIENT_CLOSED',
  /** The region has no fd or no MMAP flag. */
  NOT_MAPPABLE: 'ERR_VFIO_USER_NOT_MAPPABLE',
  /** The server did not advertise what the call needs (e.g. write_multiple). */
  UNSUPPORTED: 'ERR_VFIO_USER_UNSUPPORTED',
  /** waitForIrq gave up. */
  IRQ_TIMEOUT: 'ERR_VFIO_USER_IRQ_TIMEOUT',
} as const;

/** A ClientError code. */
export type ClientErrorCodeValue = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/** A local client-side failure with a stable `code` (see ClientErrorCode). */
export class ClientError extends VfioUserError {
  constructor(code: ClientErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A reply to `command` that did not decode or did not match the request. */
export function badReply(command: number, e: unknown): ClientError {
  return new ClientError(ClientErrorCode.BAD_REPLY, `bad ${commandName(command)} reply: ${(e as Error)?.message ?? e}`, { cause: e });
}

/** A bad argument to a client call. */
export function invalidArg(msg: string): ClientError {
  return new ClientError(ClientErrorCode.INVALID_ARG, msg);
}

/** A number or bigint argument as a bigint (IOVAs, offsets and sizes accept both). */
export const toBig = (v: bigint | number): bigint => (typeof v === 'bigint' ? v : BigInt(v));

/** True for the errnos of a VERSION error reply that turn a connection away (EBUSY, EACCES, EPERM). */
export function isRefusal(errno: number): boolean {
  return errno === Errno.EBUSY || errno === Errno.EACCES || errno === Errno.EPERM;
}

/** Why a server refused a connection, by the errno of its VERSION error reply. */
export function refusedConnection(e: RemoteError, where?: string): ClientError {
  const why = e.errno === Errno.EBUSY ? 'another client is attached' : 'this user is not allowed';
  return new ClientError(ClientErrorCode.REFUSED, `${where ? `${where}: ` : ''}the server refused the connection: ${why} (${errnoName(e.errno)})`, { cause: e });
}
