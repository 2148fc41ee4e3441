// Commands whose request and/or reply have no payload: DEVICE_RESET (13)
// request and reply, and the header-only replies of DMA_MAP, SET_IRQS and
// MIG_DATA_WRITE (which have their own helpers too).
import { einval } from './errors.js';
import { need } from './wire.js';

/** The payload of a message that carries none. */
export function encodeEmptyPayload(): Uint8Array {
  return new Uint8Array(0);
}

/** Non-empty payload → EINVAL. */
export function decodeEmptyPayload(payload: Uint8Array, what = 'message'): void {
  need(payload, 0, what);
  if (payload.length !== 0) throw einval(`${what} must have no payload, got ${payload.length} bytes`);
}

/** DEVICE_RESET request payload (empty). */
export const encodeDeviceResetRequest = encodeEmptyPayload;
/** DEVICE_RESET reply payload (empty). */
export const encodeDeviceResetReply = encodeEmptyPayload;
/** Checks a DEVICE_RESET request is empty (else EINVAL). */
export const decodeDeviceResetRequest = (p: Uint8Array): void => decodeEmptyPayload(p, 'DEVICE_RESET');
/** Checks a DEVICE_RESET reply is empty (else EINVAL). */
export const decodeDeviceResetReply = (p: Uint8Array): void => decodeEmptyPayload(p, 'DEVICE_RESET reply');
