import { einval } from './errors.js';

/** Every vfio-user message starts with this 16-byte little-endian header. */
export const HEADER_SIZE = 16;

/** Low four bits of `flags`: message type. */
export const FLAG_TYPE_MASK = 0xf;
/** Message type of a command. */
export const TYPE_COMMAND = 0x0;
/** Message type of a reply. */
export const TYPE_REPLY = 0x1;
/** The sender does not want a reply (posted writes). Errors are still reported by QEMU. */
export const FLAG_NO_REPLY = 0x10;
/** Reply carries an errno in `error`; SPEC: header only. */
export const FLAG_ERROR = 0x20;
/** Every bit outside these is reserved and must be 0. */
export const FLAGS_KNOWN = FLAG_TYPE_MASK | FLAG_NO_REPLY | FLAG_ERROR;

/** The fields of the 16-byte message header. */
export interface MessageHeader {
  /** Chosen by the sender of a command, echoed in its reply. Not unique. */
  msgId: number;
  command: number;
  /** Whole message including these 16 bytes. */
  msgSize: number;
  flags: number;
  error: number;
}

/** Decodes the 16 bytes at `offset`. Checks only that they are there. */
export function decodeHeader(buf: Uint8Array, offset = 0): MessageHeader {
  if (buf.length - offset < HEADER_SIZE) throw einval(`header needs ${HEADER_SIZE} bytes, got ${buf.length - offset}`);
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, HEADER_SIZE);
  return {
    msgId: dv.getUint16(0, true),
    command: dv.getUint16(2, true),
    msgSize: dv.getUint32(4, true),
    flags: dv.getUint32(8, true),
    error: dv.getUint32(12, true),
  };
}

/** Writes a header into `buf` at `offset`. */
export function writeHeader(buf: Uint8Array, offset: number, h: MessageHeader): void {
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, HEADER_SIZE);
  dv.setUint16(0, h.msgId & 0xffff, true);
  dv.setUint16(2, h.command & 0xffff, true);
  dv.setUint32(4, h.msgSize >>> 0, true);
  dv.setUint32(8, h.flags >>> 0, true);
  dv.setUint32(12, h.error >>> 0, true);
}

/** A new 16-byte buffer holding header `h`. */
export function encodeHeader(h: MessageHeader): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  writeHeader(out, 0, h);
  return out;
}

/** The message type (TYPE_COMMAND or TYPE_REPLY) in a flags word. */
export const messageType = (flags: number): number => flags & FLAG_TYPE_MASK;
/** True when the flags mark a reply. */
export const isReply = (flags: number): boolean => (flags & FLAG_TYPE_MASK) === TYPE_REPLY;
/** True when the flags mark a command. */
export const isCommand = (flags: number): boolean => (flags & FLAG_TYPE_MASK) === TYPE_COMMAND;
/** True unless the sender set NO_REPLY. */
export const wantsReply = (flags: number): boolean => (flags & FLAG_NO_REPLY) === 0;

/**
 * Builds a whole message: header followed by `payload`. `msgSize` is derived.
 */
export function encodeMessage(
  h: Omit<MessageHeader, 'msgSize'>,
  payload?: Uint8Array,
): Uint8Array {
  const len = HEADER_SIZE + (payload?.length ?? 0);
  const out = new Uint8Array(len);
  writeHeader(out, 0, { ...h, msgSize: len });
  if (payload) out.set(payload, HEADER_SIZE);
  return out;
}
