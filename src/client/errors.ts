import { VfioUserError } from '../protocol/errors.js';

/**
 * Stable codes of the errors the client raises for local problems. Error
 * replies from the server are RemoteError (protocol/errors.ts, with errno);
 * a closed connection is TransportClosedError; a reply that never came is
 * RequestTimeoutError.
 */
export const ClientErrorCode = {
  /** VERSION negotiation failed (major/minor, twin socket without fd...). */
  NEGOTIATION: 'ERR_VFIO_USER_NEGOTIATION',
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

export type ClientErrorCodeValue = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/** A local client-side failure with a stable `code` (see ClientErrorCode). */
export class ClientError extends VfioUserError {
  constructor(code: ClientErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
