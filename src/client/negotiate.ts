// VERSION negotiation from the client's side: what it offers, and the checks
// a server's reply must pass before the session starts.
import {
  decodeVersionWithCapabilities,
  encodeVersionWithCapabilities,
  VERSION_MAJOR,
  type CapabilitiesInput,
  type VersionCapabilities,
} from '../protocol/version.js';
import { ClientError, ClientErrorCode } from './errors.js';
import type { NegotiatedVersion } from './types.js';

/** The limits and features a client offers in VERSION. */
export interface VersionOffer {
  maxMsgFds: number;
  maxDataXferSize: number;
  maxDmaMaps: number;
  maxBitmapSize: number;
  writeMultiple: boolean;
  twinSocket: boolean;
  minor: number;
  extensions: Record<string, unknown> | undefined;
}

/** The VERSION request payload for an offer. */
export function encodeVersionOffer(o: VersionOffer): Uint8Array {
  const caps: CapabilitiesInput = {
    maxMsgFds: o.maxMsgFds,
    maxDataXferSize: o.maxDataXferSize,
    pgsizes: 4096,
    maxDmaMaps: o.maxDmaMaps,
    ...(o.writeMultiple ? { writeMultiple: true } : {}),
    migration: { pgsize: 4096, maxBitmapSize: o.maxBitmapSize },
  };
  if (o.twinSocket) caps.twinSocket = { supported: true };
  if (o.extensions) caps.extensions = o.extensions;
  return encodeVersionWithCapabilities(VERSION_MAJOR, o.minor, caps);
}

/** A VERSION reply that passed the checks. */
export interface AcceptedVersion {
  caps: VersionCapabilities;
  version: NegotiatedVersion;
  /** The twin socket's fd (one of the reply's fds), or -1. */
  twinFd: number;
}

/**
 * Decodes and checks a VERSION reply against what was offered. Throws
 * NEGOTIATION errors; the caller owns `fds` either way (none is closed here).
 */
export function acceptVersionReply(payload: Uint8Array, fds: readonly number[], o: VersionOffer): AcceptedVersion {
  let v;
  try {
    v = decodeVersionWithCapabilities(payload);
  } catch (e) {
    throw new ClientError(ClientErrorCode.NEGOTIATION, `bad VERSION reply: ${(e as Error).message}`, { cause: e });
  }
  if (v.major !== VERSION_MAJOR) throw new ClientError(ClientErrorCode.NEGOTIATION, `server speaks major ${v.major}, we speak ${VERSION_MAJOR}`);
  if (v.minor > o.minor) throw new ClientError(ClientErrorCode.NEGOTIATION, `server minor ${v.minor} > ours ${o.minor}`);
  const sc = v.capabilities;
  let twinFd = -1;
  if (sc.twinSocket?.supported) {
    if (!o.twinSocket) throw new ClientError(ClientErrorCode.NEGOTIATION, 'server enabled a twin socket we did not offer');
    const i = sc.twinSocket.fdIndex;
    if (i === undefined || i >= fds.length) throw new ClientError(ClientErrorCode.NEGOTIATION, 'twin_socket without a valid fd_index');
    twinFd = fds[i]!;
  }
  return { caps: sc, version: { major: v.major, minor: v.minor, json: v.json }, twinFd };
}
