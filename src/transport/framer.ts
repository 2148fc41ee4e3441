import { HEADER_SIZE, type MessageHeader } from '../protocol/header.js';
import { FramingFatalError } from './errors.js';
import type { Message, TransportLimits } from './types.js';

/** Bodies from this size on skip the zero fill: the receive overwrites every byte. */
const UNINITIALISED_MIN = 64 * 1024;

/**
 * A message body's buffer. Large ones are allocated without zeroing (a
 * 1 MiB memset per transfer showed in profiles): the framer fills every byte
 * before the message is handed out, and a body cut short by a closing
 * connection is dropped unseen. A plain Uint8Array over its own memory, so
 * slice() still copies (a Buffer's would not).
 */
function bodyBuffer(size: number): Uint8Array {
  return size < UNINITIALISED_MIN ? new Uint8Array(size) : new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
}

/** What the framer produced from one chunk, in stream order. */
export type FrameEvent =
  | { type: 'message'; msg: Message }
  | { type: 'oversize'; header: MessageHeader };

/**
 * Turns a byte stream (arriving in arbitrary pieces, each with the fds the
 * kernel returned for it) into whole messages. Pure state machine: no I/O.
 *
 * fd association: on a UNIX stream socket the kernel stops a read right after
 * the first segment that carries fds, so the fds returned by one recvmsg
 * belong to the message that holds the last byte of that read. The sender
 * must send fds with the first byte of their message (our send queue does).
 */
export class Framer {
  private readonly hdr = new Uint8Array(HEADER_SIZE);
  private hdrFilled = 0;
  private header: MessageHeader | null = null;
  private body: Uint8Array | null = null;
  private bodyFilled = 0;
  /** Bytes of an oversize body still to skip. */
  private drainLeft = 0;
  private curFds: number[] = [];
  private curTruncated = false;
  private dead = false;

  constructor(
    private readonly limits: Pick<TransportLimits, 'maxMessageSize' | 'maxDrainSize'>,
    /** Called for fds that cannot be given to any message (e.g. drained ones). */
    private readonly discardFds: (fds: number[]) => void,
  ) {}

  /**
   * Where the rest of the current message body goes, when a header has been
   * read and its body is still incomplete: the socket can receive straight
   * into it (bodyFilledInPlace) instead of into a read buffer and a copy.
   */
  bodyWindow(): Uint8Array | null {
    if (this.dead || this.header === null || this.body === null || this.drainLeft > 0) return null;
    return this.body.subarray(this.bodyFilled);
  }

  /** Bytes of the current message body still to come (0 between messages). */
  get bodyLeft(): number {
    return this.body === null ? 0 : this.body.length - this.bodyFilled;
  }

  /** `n` bytes were received straight into bodyWindow(), with these fds. */
  bodyFilledInPlace(n: number, fds: number[] = [], fdsTruncated = false): FrameEvent[] {
    const body = this.body!;
    this.bodyFilled += n;
    this.curFds.push(...fds);
    this.curTruncated ||= fdsTruncated;
    if (this.bodyFilled < body.length) return [];
    const msg: Message = { header: this.header!, payload: body, fds: this.curFds, fdsTruncated: this.curTruncated };
    this.header = null;
    this.body = null;
    this.curFds = [];
    this.curTruncated = false;
    return [{ type: 'message', msg }];
  }

  /** True when no partial message is buffered. */
  get idle(): boolean {
    return this.hdrFilled === 0 && this.header === null && this.drainLeft === 0;
  }

  /**
   * Feeds one chunk. Returns the events completed by it. Throws
   * FramingFatalError when the stream cannot be resynchronised (msg_size < 16
   * or beyond maxDrainSize); the connection must then be dropped.
   */
  push(chunk: Uint8Array, fds: number[] = [], fdsTruncated = false): FrameEvent[] {
    if (this.dead) {
      this.discardFds(fds);
      throw new FramingFatalError('framer used after a fatal error');
    }
    const events: FrameEvent[] = [];
    let pos = 0;
    const n = chunk.length;
    // Which message gets this chunk's fds is only known once the chunk is
    // parsed, so the last completed message is remembered here.
    let lastCompleted: Message | null = null;
    try {
      while (pos < n) {
        if (this.drainLeft > 0) {
          const take = Math.min(this.drainLeft, n - pos);
          this.drainLeft -= take;
          pos += take;
          if (this.drainLeft === 0) lastCompleted = null;
          continue;
        }
        if (this.header === null) {
          const take = Math.min(HEADER_SIZE - this.hdrFilled, n - pos);
          this.hdr.set(chunk.subarray(pos, pos + take), this.hdrFilled);
          this.hdrFilled += take;
          pos += take;
          if (this.hdrFilled < HEADER_SIZE) break;
          const b = this.hdr;
          // Inline little-endian decode (decodeHeader's DataView per message shows in profiles).
          const h: MessageHeader = {
            msgId: b[0]! | (b[1]! << 8),
            command: b[2]! | (b[3]! << 8),
            msgSize: (b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) >>> 0,
            flags: (b[8]! | (b[9]! << 8) | (b[10]! << 16) | (b[11]! << 24)) >>> 0,
            error: (b[12]! | (b[13]! << 8) | (b[14]! << 16) | (b[15]! << 24)) >>> 0,
          };
          this.hdrFilled = 0;
          if (h.msgSize < HEADER_SIZE) {
            throw new FramingFatalError(`msg_size ${h.msgSize} is smaller than the header`);
          }
          if (h.msgSize > this.limits.maxMessageSize) {
            if (h.msgSize > this.limits.maxDrainSize) {
              throw new FramingFatalError(`msg_size ${h.msgSize} exceeds ${this.limits.maxDrainSize}; dropping connection`);
            }
            events.push({ type: 'oversize', header: h });
            this.drainLeft = h.msgSize - HEADER_SIZE;
            this.discardCurrentFds();
            lastCompleted = null;
            continue;
          }
          this.header = h;
          this.body = bodyBuffer(h.msgSize - HEADER_SIZE);
          this.bodyFilled = 0;
        }
        const body = this.body!;
        const take = Math.min(body.length - this.bodyFilled, n - pos);
        if (take > 0) {
          body.set(chunk.subarray(pos, pos + take), this.bodyFilled);
          this.bodyFilled += take;
          pos += take;
        }
        if (this.bodyFilled === body.length) {
          const msg: Message = {
            header: this.header,
            payload: body,
            fds: this.curFds,
            fdsTruncated: this.curTruncated,
          };
          events.push({ type: 'message', msg });
          lastCompleted = msg;
          this.header = null;
          this.body = null;
          this.curFds = [];
          this.curTruncated = false;
        }
      }
    } catch (e) {
      this.dead = true;
      this.discardCurrentFds();
      this.discardFds(fds);
      for (const ev of events) if (ev.type === 'message') this.discardFds(ev.msg.fds);
      throw e;
    }
    if (fds.length > 0 || fdsTruncated) {
      const inProgress = this.header !== null || this.hdrFilled > 0;
      if (this.drainLeft > 0 || (!inProgress && lastCompleted === null)) {
        // Chunk ended inside a drained body: nobody may have these fds.
        this.discardFds(fds);
      } else if (inProgress) {
        this.curFds.push(...fds);
        this.curTruncated ||= fdsTruncated;
      } else {
        lastCompleted!.fds.push(...fds);
        lastCompleted!.fdsTruncated ||= fdsTruncated;
      }
    }
    return events;
  }

  /** Closes fds held for a partial message (on connection close). */
  reset(): void {
    this.discardCurrentFds();
    this.hdrFilled = 0;
    this.header = null;
    this.body = null;
    this.drainLeft = 0;
  }

  private discardCurrentFds(): void {
    if (this.curFds.length > 0) this.discardFds(this.curFds);
    this.curFds = [];
    this.curTruncated = false;
  }
}
