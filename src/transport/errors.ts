import { VfioUserError } from '../protocol/errors.js';

export class TransportClosedError extends VfioUserError {
  constructor(message = 'transport is closed') {
    super('ERR_VFIO_USER_CLOSED', message);
  }
}

/** The peer broke framing so badly the stream could not be resynchronised. */
export class FramingFatalError extends VfioUserError {
  constructor(message: string) {
    super('ERR_VFIO_USER_FRAMING', message);
  }
}

export class RequestTimeoutError extends VfioUserError {
  readonly command: number;
  constructor(command: number, timeoutMs: number) {
    super('ERR_VFIO_USER_TIMEOUT', `no reply to command ${command} within ${timeoutMs} ms`);
    this.command = command;
  }
}
