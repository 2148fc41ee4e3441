import { RemoteError } from '../protocol/errors.js';
import {
  FLAG_ERROR,
  FLAG_NO_REPLY,
  TYPE_COMMAND,
  TYPE_REPLY,
  HEADER_SIZE,
  encodeMessage,
  isReply,
  type MessageHeader,
} from '../protocol/header.js';
import { RequestTimeoutError, TransportClosedError } from './errors.js';
import type { FramingError, Message, Transport } from './types.js';

export interface RequestOptions {
  /** Reject with RequestTimeoutError after this long. Default: the endpoint's. */
  timeoutMs?: number;
  /** fds to send with the request (caller keeps ownership unless ownFds). */
  fds?: readonly number[];
  ownFds?: boolean;
}

export interface EndpointOptions {
  /** Default request timeout. QEMU uses 5000 ms; default here 5000. */
  requestTimeoutMs?: number;
}

export interface EndpointHandlers {
  /** A command from the peer. The handler owns msg.fds. */
  onCommand?: (msg: Message) => void;
  /** A reply nobody waits for (late, or never asked for). Its fds are closed after. */
  onStrayReply?: (msg: Message) => void;
  onFramingError?: (err: FramingError) => void;
  onClose?: (err?: Error) => void;
}

/**
 * Payloads from this size on are sent after their header instead of being
 * copied into one message buffer: for 1 MiB transfers that copy (into a
 * freshly allocated, page-faulting buffer) cost more than the send.
 */
const COPY_LIMIT = 64 * 1024;

/** A message payload: one buffer, or parts sent back to back (see PayloadParts). */
export type Payload = Uint8Array | readonly Uint8Array[];

/**
 * A new buffer of 16 + `extra` bytes starting with the header (little
 * endian, written byte by byte: no DataView or header object per message).
 */
function headerBytes(h: Omit<MessageHeader, 'msgSize'>, msgSize: number, extra: number): Uint8Array {
  const b = new Uint8Array(HEADER_SIZE + extra);
  b[0] = h.msgId;
  b[1] = h.msgId >>> 8;
  b[2] = h.command;
  b[3] = h.command >>> 8;
  b[4] = msgSize;
  b[5] = msgSize >>> 8;
  b[6] = msgSize >>> 16;
  b[7] = msgSize >>> 24;
  b[8] = h.flags;
  b[9] = h.flags >>> 8;
  b[10] = h.flags >>> 16;
  b[11] = h.flags >>> 24;
  b[12] = h.error;
  b[13] = h.error >>> 8;
  b[14] = h.error >>> 16;
  b[15] = h.error >>> 24;
  return b;
}

interface Pending {
  command: number;
  resolve: (m: Message) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
  /** Timed out: its reply, if it ever comes, is swallowed. */
  dead: boolean;
}

/**
 * Message-level peer on top of a transport: assigns msg_ids, matches replies
 * to the requests that are waiting (ids may repeat, so per id a FIFO), routes
 * commands from the peer to onCommand, and builds replies that honour
 * NO_REPLY. Both the server (for DMA_READ/WRITE) and the client use it.
 */
export class Endpoint {
  readonly transport: Transport;
  private nextId = 1;
  private readonly pending = new Map<number, Pending[]>();
  private handlers: EndpointHandlers = {};
  private readonly timeoutMs: number;

  constructor(transport: Transport, opts: EndpointOptions = {}) {
    this.transport = transport;
    this.timeoutMs = opts.requestTimeoutMs ?? 5000;
    transport.setHandlers({
      onMessage: (m) => this.dispatch(m),
      onFramingError: (e) => this.handlers.onFramingError?.(e),
      onClose: (err) => this.onTransportClose(err),
    });
  }

  setHandlers(h: EndpointHandlers): void {
    this.handlers = { ...this.handlers, ...h };
  }

  get closed(): boolean {
    return this.transport.closed;
  }

  /** Number of requests waiting for a reply. */
  get inFlight(): number {
    let n = 0;
    for (const list of this.pending.values()) for (const p of list) if (!p.dead) n++;
    return n;
  }

  /** Routes one message (exposed for pull mode, where the caller reads). */
  dispatch(msg: Message): void {
    if (isReply(msg.header.flags)) {
      this.onReply(msg);
      return;
    }
    if (this.handlers.onCommand) this.handlers.onCommand(msg);
    else this.closeFds(msg.fds);
  }

  private onReply(msg: Message): void {
    const list = this.pending.get(msg.header.msgId);
    const p = list?.shift();
    if (list && list.length === 0) this.pending.delete(msg.header.msgId);
    if (!p || p.dead || p.command !== msg.header.command) {
      if (p && !p.dead) {
        // Wrong command for this id: the request stays unanswered.
        list ? list.unshift(p) : this.pending.set(msg.header.msgId, [p]);
      }
      this.handlers.onStrayReply?.(msg);
      this.closeFds(msg.fds);
      return;
    }
    if (p.timer) clearTimeout(p.timer);
    if (msg.header.flags & FLAG_ERROR) {
      this.closeFds(msg.fds);
      p.reject(new RemoteError(msg.header.command, msg.header.error));
    } else {
      p.resolve(msg);
    }
  }

  private allocId(): number {
    for (let i = 0; i < 0x10000; i++) {
      const id = this.nextId;
      this.nextId = (this.nextId + 1) & 0xffff;
      if (!this.pending.has(id)) return id;
    }
    // Every id has a waiter: reuse is legal in vfio-user, FIFO keeps order.
    return this.nextId;
  }

  /** Sends a command and resolves with its reply (rejects with RemoteError on an error reply). */
  request(command: number, payload?: Payload, opts: RequestOptions = {}): Promise<Message> {
    if (this.transport.closed) return Promise.reject(new TransportClosedError());
    const msgId = this.allocId();
    return new Promise<Message>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
      const p: Pending = { command, resolve, reject, timer: null, dead: false };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        p.timer = setTimeout(() => {
          p.dead = true;
          p.timer = null;
          reject(new RequestTimeoutError(command, timeoutMs));
        }, timeoutMs);
      }
      const list = this.pending.get(msgId);
      if (list) list.push(p);
      else this.pending.set(msgId, [p]);
      try {
        this.sendMessage({ msgId, command, flags: TYPE_COMMAND, error: 0 }, payload, opts.fds, opts.ownFds);
      } catch (e) {
        if (p.timer) clearTimeout(p.timer);
        p.dead = true;
        reject(e as Error);
      }
    });
  }

  /** Sends a command with NO_REPLY. */
  post(command: number, payload?: Payload, fds?: readonly number[]): boolean {
    const msgId = this.allocId();
    return this.sendMessage({ msgId, command, flags: TYPE_COMMAND | FLAG_NO_REPLY, error: 0 }, payload, fds);
  }

  /**
   * Answers a command. Does nothing for a NO_REPLY command: QEMU treats any
   * reply to a posted write as a protocol error. Returns false when the
   * transport's send queue is above its high-water mark (see onDrain).
   */
  reply(to: MessageHeader, payload?: Payload, fds?: readonly number[], ownFds = false): boolean {
    if (to.flags & FLAG_NO_REPLY) {
      if (ownFds && fds) this.closeFds(fds);
      return true;
    }
    if (this.transport.closed) {
      if (ownFds && fds) this.closeFds(fds);
      return true;
    }
    return this.sendMessage({ msgId: to.msgId, command: to.command, flags: TYPE_REPLY, error: 0 }, payload, fds, ownFds);
  }

  /** Error reply: header only, as the spec requires. Skipped for NO_REPLY. */
  replyError(to: MessageHeader, errno: number): boolean {
    if (to.flags & FLAG_NO_REPLY || this.transport.closed) return true;
    return this.transport.send(encodeMessage({ msgId: to.msgId, command: to.command, flags: TYPE_REPLY | FLAG_ERROR, error: errno }));
  }

  /**
   * Sends header + payload. A payload of COPY_LIMIT bytes or more is not
   * copied behind the header into a new buffer: the 16-byte header and the
   * payload go to the transport one after the other (the stream carries
   * them back to back; fds ride with the header). Such a payload must not be
   * changed until sent; every caller here passes a freshly encoded one.
   */
  private sendMessage(h: Omit<MessageHeader, 'msgSize'>, payload: Payload | undefined, fds?: readonly number[], ownFds = false): boolean {
    const parts: readonly Uint8Array[] = payload === undefined ? [] : payload instanceof Uint8Array ? [payload] : payload;
    let n = 0;
    for (const p of parts) n += p.length;
    // The header and the small parts before the first big one share a buffer.
    let k = 0;
    let lead = 0;
    while (k < parts.length && (n < COPY_LIMIT || parts[k]!.length < COPY_LIMIT)) lead += parts[k++]!.length;
    const out = headerBytes(h, HEADER_SIZE + n, lead);
    for (let i = 0, at = HEADER_SIZE; i < k; at += parts[i]!.length, i++) out.set(parts[i]!, at);
    let ok = this.transport.send(out, fds, ownFds);
    for (let i = k; i < parts.length && !this.transport.closed; i++) if (parts[i]!.length > 0) ok = this.transport.send(parts[i]!) && ok;
    return ok && !this.transport.closed;
  }

  close(opts?: { timeoutMs?: number }): Promise<void> {
    return this.transport.close(opts);
  }

  private onTransportClose(err?: Error): void {
    const e = new TransportClosedError(err ? `connection closed: ${err.message}` : 'connection closed');
    for (const list of this.pending.values()) {
      for (const p of list) {
        if (p.timer) clearTimeout(p.timer);
        if (!p.dead) p.reject(e);
        p.dead = true;
      }
    }
    this.pending.clear();
    this.handlers.onClose?.(err);
  }

  private closeFds(fds: readonly number[]): void {
    this.transport.releaseFds(fds);
  }
}

